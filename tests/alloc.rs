//! Deciding does not allocate once a thread has decided before: the scratch
//! space (bitsets, the normalization buffer, the buffer of matching model globs)
//! is reused. Counted by a global allocator, per thread, so other tests running
//! alongside do not disturb the count.

mod support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use crate::support::policies::*;
use policy_mesh::names::Route;

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

// SAFETY: every call is forwarded to the system allocator unchanged; only a
// thread-local counter (const-initialized, so it never allocates) is bumped.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        // SAFETY: the caller's contract is passed on as is.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract is passed on as is.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        // SAFETY: the caller's contract is passed on as is.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations_during(f: impl FnOnce()) -> usize {
    let before = ALLOCATIONS.with(Cell::get);
    f();
    ALLOCATIONS.with(Cell::get) - before
}

#[test]
fn a_warm_decision_with_keywords_and_model_globs_does_not_allocate() {
    let policy = compile(vec![
        rule("local-models", Route::Local).model(&["llama*", "*/llama*", "qwen?"]),
        rule("sensitive", Route::Local)
            .keywords(&["secret", "confidential"])
            .model(&["gpt-4o*"]),
        rule("cloud", Route::Public).model(&["gpt-4o*", "*/gpt-4o*"]),
        rule("short", Route::Local).chars(None, Some(10)),
    ]);
    let messages = [
        msg(policy_mesh::names::Role::System, "Be brief."),
        user("Summarize the CONFIDENTIAL memo, please"),
    ];
    let requests = [
        (Some("GPT-4o-mini"), Some("sensitive")),
        (Some("openai/gpt-4o"), Some("cloud")),
        (Some("llama3:8b"), Some("local-models")),
        (Some("other"), None),
        (None, None),
    ];
    // Warm the thread's scratch space and the matchers' caches.
    for _ in 0..3 {
        for (model, _) in requests {
            policy.decide(&messages, model);
        }
    }
    for (model, expected) in requests {
        let mut decided = None;
        let n = allocations_during(|| decided = Some(policy.decide(&messages, model)));
        let decided = decided.expect("decided");
        assert_eq!(decided.rule.as_deref(), expected, "{model:?}");
        assert_eq!(n, 0, "deciding for {model:?} allocated {n} times");
    }
}
