//! The child's part between fork and exec allocates nothing, on success
//! and on every error path (issue 11, defect 12: found by reading, as an
//! `io::Error::other(..)` built in the child; nothing to reproduce at run
//! time, so the allocator counts instead).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use super::descendants_in;
use crate::procfs;

/// The system allocator, counting the calls each thread makes.
struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

fn count() {
    let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
}

fn allocations() -> usize {
    ALLOCATIONS.with(Cell::get)
}

// SAFETY: every call is forwarded to the system allocator unchanged.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: the caller's contract is passed on.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: the caller's contract is passed on.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: the caller's contract is passed on.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract is passed on.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static COUNTING: Counting = Counting;

#[test]
fn before_exec_allocates_nothing_on_any_path() {
    // On a thread of its own: only its allocations are counted, and the
    // parent-death signal it sets is cleared before it ends.
    let (counted, wrong_parent) = std::thread::spawn(|| {
        let start = allocations();
        // The parent check fails (ESRCH, after the prctl).
        let wrong_parent = super::before_exec(false, -1, -1);
        // Taking the terminal fails or succeeds, depending on how the
        // tests were started; either path must not allocate.
        let _ = super::before_exec(true, std::os::unix::process::parent_id() as i32, -1);
        let counted = allocations() - start;
        #[cfg(target_os = "linux")]
        let _ = crate::sys::set_parent_death_signal(0);
        (counted, wrong_parent)
    })
    .join()
    .expect("the test thread");
    assert_eq!(counted, 0, "allocations between fork and exec");
    #[cfg(target_os = "linux")]
    assert_eq!(
        wrong_parent.map_err(|e| e.raw_os_error()),
        Err(Some(libc::ESRCH))
    );
    #[cfg(not(target_os = "linux"))]
    let _ = wrong_parent;
}

#[test]
fn the_allocation_counter_counts() {
    let n = std::thread::spawn(|| {
        let start = allocations();
        let v: Vec<u8> = std::hint::black_box(Vec::with_capacity(10));
        drop(v);
        let e = std::hint::black_box(std::io::Error::other("built in the child"));
        drop(e);
        allocations() - start
    })
    .join()
    .expect("the test thread");
    assert!(n >= 2, "{n}");
}

/// `descendants` (readiness asks it who of ours listens) over a chain of
/// 20,000 processes whose pids fall as the chain goes down (pids wrap
/// around): a pass over the table per generation took seconds here.
#[test]
fn a_deep_tree_is_walked_in_one_pass() {
    let n = 20_000;
    let p = |pid: i32, ppid: i32| procfs::ProcInfo {
        pid,
        ppid,
        pgid: pid,
        start_ticks: 0,
        comm: "x".into(),
        zombie: false,
        rss_pages: 0,
    };
    // root 1_000_000 → n+1 → n → … → 2; 1 and 99 are not ours.
    let mut t: Vec<_> = (2..=n + 1).map(|pid| p(pid, pid + 1)).collect();
    t[n as usize - 1].ppid = 1_000_000;
    t.extend([p(1, 0), p(1_000_000, 1), p(99, 1)]);
    t.sort_by_key(|p| p.pid);
    let started = std::time::Instant::now();
    let found = descendants_in(&t, 1_000_000);
    let took = started.elapsed();
    assert_eq!(found.len(), n as usize);
    assert_eq!(found[..2], [n + 1, n], "nearest first");
    assert!(
        took < std::time::Duration::from_secs(1),
        "a chain of {n} took {took:?}"
    );
}
