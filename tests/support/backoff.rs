//! The bound the endpoint-discovery backoff of introspection and userinfo puts on
//! requests to a failing metadata endpoint.

use std::time::Duration;

/// The most discoveries that a backoff of 1 s doubling (less 20 % jitter at most)
/// lets happen within `elapsed`: one at once, then one more each time the shortest
/// possible wait has passed.
pub(crate) fn most_discoveries(elapsed: Duration) -> u64 {
    let (mut discoveries, mut wait, mut next) = (1, Duration::from_millis(800), Duration::ZERO);
    loop {
        next += wait;
        if next > elapsed {
            return discoveries;
        }
        discoveries += 1;
        wait *= 2;
    }
}
