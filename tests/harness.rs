//! The shared waiting loop of tests/common keeps its word: it returns as
//! soon as the awaited thing happens, gives up at its bound, and a failed
//! wait names what it awaited and shows what it saw last.

mod common;

use std::cell::Cell;
use std::time::{Duration, Instant};

use common::{poll_until, wait_until};

#[test]
fn wait_until_returns_the_value_once_the_probe_gives_it() {
    let tries = Cell::new(0);
    let got = wait_until("the third try", Duration::from_secs(10), || {
        tries.set(tries.get() + 1);
        if tries.get() == 3 {
            Ok("done")
        } else {
            Err(tries.get())
        }
    });
    assert_eq!(got, "done");
    assert_eq!(tries.get(), 3, "no try after the one that succeeded");
}

#[test]
fn a_failed_wait_names_what_it_awaited_and_shows_the_last_state() {
    let tries = Cell::new(0);
    let failed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        wait_until(
            "the answer",
            Duration::from_millis(100),
            || -> Result<(), _> {
                tries.set(tries.get() + 1);
                Err(format!("try {}", tries.get()))
            },
        )
    }));
    let panic = failed.expect_err("a wait that never succeeds fails");
    let message = panic
        .downcast_ref::<String>()
        .expect("a formatted panic message");
    assert!(message.contains("for the answer;"), "{message}");
    let last = format!("last seen: \"try {}\"", tries.get());
    assert!(message.ends_with(&last), "{message}");
}

#[test]
fn poll_until_gives_up_at_its_bound_with_the_last_state() {
    let within = Duration::from_millis(200);
    let started = Instant::now();
    let mut tries = 0u32;
    let got: Result<(), u32> = poll_until(within, || {
        tries += 1;
        Err(tries)
    });
    assert!(started.elapsed() >= within, "gave up early");
    assert_eq!(got, Err(tries), "the state of the last try");
    assert!(tries > 1, "tried again before giving up");
}
