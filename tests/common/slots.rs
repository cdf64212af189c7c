//! jamd's connection slots from a client's side: fill them, see a newcomer
//! refused, see a slot come back when its client leaves.

use std::time::Duration;

use super::client::{jam_time, Client};
use super::daemon::Jamd;
use super::wait::wait_until;

/// How long a freed slot may take to be given to a newcomer.
const FREED_WITHIN: Duration = Duration::from_secs(15);

/// `n` clients connected to `jamd`, each served a TIME: they hold `n` slots.
pub fn hold(jamd: &Jamd, n: usize) -> Vec<Client> {
    let mut held: Vec<Client> = (0..n).map(|_| jamd.connect()).collect();
    for (i, c) in held.iter_mut().enumerate() {
        let reply = c.ask("TIME");
        assert!(jam_time(&reply).is_some(), "held client {i}: {reply:?}");
    }
    held
}

/// Asserts that `c`, just connected, is told `ERROR server busy` and closed
/// at once.
pub fn assert_refused(mut c: Client) {
    assert_eq!(c.line(), "ERROR server busy");
    assert!(c.closed(), "a refused client is closed at once");
}

/// Lets `held` go with QUIT, then connects (bounded) until a newcomer is
/// served: the slot it held comes back.
pub fn assert_slot_comes_back(jamd: &Jamd, mut held: Client) {
    held.send(b"QUIT\r\n");
    assert!(held.closed(), "QUIT closes");
    wait_until("a newcomer served in the freed slot", FREED_WITHIN, || {
        let reply = jamd.connect().ask("TIME");
        jam_time(&reply).map(drop).ok_or(reply)
    });
}
