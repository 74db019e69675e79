//! The tools a server listed, as the engine last saw them: their annotations (for
//! annotation rules) and the digests of their definitions (for pins).

use crate::mcp::tool_digest;
use crate::mcp::tools_list::listing_result;
use crate::policy::Hints;
use hashbrown::HashMap;
use serde_json::Value;

/// One listed tool.
#[derive(Debug, Clone)]
pub(crate) struct ListedTool {
    pub(crate) hints: Hints,
    /// `sha256:<hex>` of the definition (`mcp::tool_digest`).
    pub(crate) digest: String,
}

/// Tool name → what its last listing said. Replaced as a whole on each observation (the
/// engine keeps it in an `ArcSwap`), so calls read it without locking.
#[derive(Debug, Clone, Default)]
pub(crate) struct Catalog {
    tools: HashMap<Box<str>, ListedTool, foldhash::fast::RandomState>,
}

/// The most tools one catalog keeps: a server listing more (or a hostile one) cannot make
/// the engine's memory grow without bound. Later tools beyond it are not recorded, so
/// pins treat them as never listed and annotation rules as unannotated.
pub(crate) const MAX_TOOLS: usize = 100_000;

impl Catalog {
    /// What the catalog knows about `name`.
    pub(crate) fn get(&self, name: &str) -> Option<&ListedTool> {
        self.tools.get(name)
    }

    /// This catalog updated with the entries of a `tools/list` result (the `result`
    /// object or the whole JSON-RPC response); entries without a string `name` are
    /// skipped. Returns the new catalog and how many entries it recorded.
    pub(crate) fn with_listing(&self, result: &Value) -> (Catalog, usize) {
        let Some(tools) = listing_result(result)
            .and_then(|r| r.get("tools"))
            .and_then(Value::as_array)
        else {
            return (self.clone(), 0);
        };
        self.with_entries(&entries(tools))
    }

    /// This catalog updated with `entries` (from [`entries`]); how many it recorded.
    pub(crate) fn with_entries(&self, entries: &[Entry<'_>]) -> (Catalog, usize) {
        let mut next = self.clone();
        let mut recorded = 0;
        for (name, listed) in entries.iter().filter_map(|e| e.as_ref()) {
            if next.tools.len() >= MAX_TOOLS && !next.tools.contains_key(*name) {
                continue;
            }
            next.tools.insert((*name).into(), listed.clone());
            recorded += 1;
        }
        (next, recorded)
    }
}

/// One `tools/list` entry as the catalog records it: its name and what it says, or `None`
/// for an entry without a string `name`.
pub(crate) type Entry<'t> = Option<(&'t str, ListedTool)>;

/// The entries of a listing, each hinted and digested once: the catalog records them,
/// and `tools/list` filtering judges them, from the same values.
pub(crate) fn entries(tools: &[Value]) -> Vec<Entry<'_>> {
    tools
        .iter()
        .map(|tool| {
            let name = tool.get("name").and_then(Value::as_str)?;
            let listed = ListedTool {
                hints: Hints::of_tool(tool),
                digest: tool_digest(tool),
            };
            Some((name, listed))
        })
        .collect()
}
