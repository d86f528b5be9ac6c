//! Call sites: where pins were taken (an entry point and a kernel stack), with their stacks
//! named once each.

use std::{cmp::Ordering, collections::HashMap};

use gup_trace_common::Hook;

use crate::{
    engine::pins::SiteId,
    symbols::{CallStack, call_frames},
};

/// Why a call site has no stack: it has no stack id.
pub const NO_STACK: &str = "the kernel recorded no stack (pins taken outside a GUP call)";

#[derive(Clone, Debug, PartialEq)]
pub struct SiteRow {
    pub id: SiteId,
    pub entry: &'static str,
    pub stack_id: Option<u32>,
    pub taken: u64,
    pub released: u64,
    pub outstanding: u64,
    /// Pins taken per second since the baseline.
    pub rate: f64,
    /// When its oldest outstanding pin was taken.
    pub oldest_ns: Option<u64>,
    /// The first frame below the GUP code: who asked for the pins.
    pub caller: String,
    /// The stack, top first (without the tracer's frames), or why there is none.
    pub frames: Result<Vec<String>, String>,
}

impl SiteRow {
    /// Most pins taken first, then most outstanding.
    pub fn most_taken_first(a: &SiteRow, b: &SiteRow) -> Ordering {
        b.taken
            .cmp(&a.taken)
            .then(b.outstanding.cmp(&a.outstanding))
    }
}

/// A kernel stack named for a call site: its caller and its first frames.
pub type NamedStack = (String, Result<Vec<String>, String>);

/// Call sites' stacks, named once per stack id and kept (reading and naming a stack costs
/// more than a snapshot should).
pub struct SiteStacks {
    depth: usize,
    named: HashMap<u32, NamedStack>,
}

impl SiteStacks {
    /// Stacks named to at most `depth` frames.
    pub fn new(depth: usize) -> SiteStacks {
        SiteStacks {
            depth,
            named: HashMap::new(),
        }
    }

    /// The caller and frames of a site's stack; `lookup` reads stacks not named yet.
    pub fn name(
        &mut self,
        stack_id: Option<u32>,
        entry: Hook,
        lookup: &mut dyn FnMut(u32) -> CallStack,
    ) -> NamedStack {
        let Some(id) = stack_id else {
            return (String::new(), Err(NO_STACK.into()));
        };
        let depth = self.depth;
        self.named
            .entry(id)
            .or_insert_with(|| stack_text(&lookup(id), entry, depth))
            .clone()
    }
}

/// Whether a frame is GUP's own code (or the tracer's), not the caller that asked for pins.
fn is_gup_internal(function: &str) -> bool {
    function.contains("gup")
        || function.starts_with("pin_user_pages")
        || function.starts_with("get_user_pages")
        || function.starts_with("__get_user_pages")
        || function.starts_with("try_grab")
        || function.starts_with("follow_page")
        || function.starts_with("folio_add_pin")
}

/// The caller (first frame outside GUP) and the first `depth` frames as text.
fn stack_text(stack: &CallStack, entry: Hook, depth: usize) -> NamedStack {
    match stack {
        Ok(frames) => {
            let frames = call_frames(frames, entry);
            let caller = frames
                .iter()
                .find(|f| f.function().is_none_or(|name| !is_gup_internal(name)))
                .map(|f| f.function().map_or_else(|| f.to_string(), str::to_string))
                .unwrap_or_default();
            (
                caller,
                Ok(frames.iter().take(depth).map(ToString::to_string).collect()),
            )
        }
        Err(why) => (String::new(), Err(why.clone())),
    }
}
