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

/// The most on-demand JWKS fetches that unknown `kid`s can trigger within `elapsed`
/// under the key store's pacing: one at once, then one each time the cooldown has
/// passed, the cooldown starting at 250 ms (or `ceiling`, when shorter) and doubling up
/// to `ceiling`. The store compares instants, so 1 % is allowed for timer rounding.
pub(crate) fn most_on_demand_fetches(elapsed: Duration, ceiling: Duration) -> u64 {
    let elapsed = elapsed + elapsed / 100;
    let (mut fetches, mut cooldown, mut next) = (1, Duration::from_millis(250).min(ceiling), Duration::ZERO);
    loop {
        next += cooldown;
        if next > elapsed {
            return fetches;
        }
        fetches += 1;
        cooldown = (cooldown * 2).min(ceiling);
    }
}
