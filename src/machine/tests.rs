//! The machine stepped through its transitions, without a network or a clock.

use super::*;
use crate::backoff::Backoff;

const SLICES: Api = Api::EndpointSlices;
const ENDPOINTS: Api = Api::Endpoints;

fn machine() -> Machine {
    machine_for(Source::Endpoints)
}

fn machine_for(source: Source) -> Machine {
    Machine::new(source, Delays::new(Backoff::default(), 42))
}

fn list(resource: Api) -> Command {
    Command::List { resource }
}

fn watch(rv: &str) -> Command {
    watch_of(ENDPOINTS, rv)
}

fn watch_of(resource: Api, rv: &str) -> Command {
    Command::Watch {
        resource,
        resource_version: rv.into(),
    }
}

fn listed(rv: &str) -> Outcome {
    Outcome::Listed {
        resource_version: rv.into(),
    }
}

fn list_failed(status: u16) -> Outcome {
    Outcome::ListFailed {
        status: Some(status),
        retry_after: None,
    }
}

fn ended(lasted: Duration) -> Outcome {
    Outcome::WatchEnded {
        healthy: true,
        lasted,
    }
}

fn error_event(error: WatchError) -> Outcome {
    Outcome::ErrorEvent {
        error,
        healthy: false,
    }
}

/// `m` after its watch saw an event at `rv`.
fn at<'a>(m: &'a mut Machine, rv: &str) -> &'a mut Machine {
    m.advance(Some(rv.into()));
    m
}

fn waits(c: &Command) -> Duration {
    match c {
        Command::Wait(d) => *d,
        other => panic!("expected a wait, got {other:?}"),
    }
}

/// A machine for `source` that listed and watches from "5".
fn watching(source: Source) -> Machine {
    let mut m = machine_for(source);
    m.step(Outcome::Start);
    m.step(listed("5"));
    m
}

#[test]
fn starts_by_listing_then_watches_from_the_lists_resource_version() {
    let mut m = machine();
    assert_eq!(m.step(Outcome::Start), list(ENDPOINTS));
    assert_eq!(m.step(listed("10")), watch("10"));
    assert_eq!(
        m.phase(),
        &Phase::Watching {
            resource_version: "10".into()
        }
    );
}

#[test]
fn a_clean_end_rewatches_at_once_from_the_last_resource_version() {
    let mut m = machine();
    m.step(Outcome::Start);
    m.step(listed("10"));
    let next = at(&mut m, "17").step(ended(PROBE_SLICES_EVERY * 2));
    assert_eq!(next, watch("17"));
}

#[test]
fn a_watch_that_ends_at_once_with_nothing_backs_off_and_the_delays_grow() {
    let mut m = machine();
    m.step(Outcome::Start);
    m.step(listed("1"));
    let mut last_ceiling = Duration::ZERO;
    for n in 0..6 {
        let d = waits(&at(&mut m, "1").step(Outcome::WatchEnded {
            healthy: false,
            lasted: Duration::ZERO,
        }));
        assert!(d >= Duration::from_millis(500), "attempt {n}: {d:?}");
        let ceiling = Duration::from_secs(1 << n).min(Duration::from_secs(30));
        assert!(d <= ceiling);
        last_ceiling = ceiling;
        assert_eq!(m.step(Outcome::Waited), watch("1"));
    }
    assert_eq!(last_ceiling, Duration::from_secs(30));
}

#[test]
fn expired_relists_at_once_the_first_time_and_backs_off_when_it_repeats() {
    let mut m = watching(Source::Endpoints);
    assert_eq!(m.step(Outcome::Expired { healthy: true }), list(ENDPOINTS));
    m.step(listed("9"));
    let next = m.step(Outcome::Expired { healthy: false });
    waits(&next);
    assert_eq!(m.phase(), &Phase::BackingOff { resume: None });
    assert_eq!(m.step(Outcome::Waited), list(ENDPOINTS));
}

#[test]
fn a_failed_watch_resumes_from_its_resource_version_after_the_backoff() {
    let mut m = watching(Source::Endpoints);
    let next = at(&mut m, "8").step(Outcome::WatchFailed {
        retry_after: None,
        relist: false,
        healthy: true,
    });
    waits(&next);
    assert_eq!(m.step(Outcome::Waited), watch("8"));
}

#[test]
fn malformed_data_relists_after_the_backoff() {
    let mut m = watching(Source::Endpoints);
    waits(&at(&mut m, "8").step(Outcome::WatchFailed {
        retry_after: None,
        relist: true,
        healthy: false,
    }));
    assert_eq!(m.step(Outcome::Waited), list(ENDPOINTS));
}

#[test]
fn a_failed_list_retries_the_list_and_honours_retry_after() {
    let mut m = machine();
    m.step(Outcome::Start);
    let d = waits(&m.step(Outcome::ListFailed {
        status: Some(429),
        retry_after: Some(Duration::from_secs(4)),
    }));
    assert!(
        d >= Duration::from_secs(4) && d <= Duration::from_secs(5),
        "{d:?}"
    );
    assert_eq!(m.step(Outcome::Waited), list(ENDPOINTS));
}

#[test]
fn a_healthy_watch_resets_the_backoff() {
    let mut m = machine();
    m.step(Outcome::Start);
    for _ in 0..8 {
        m.step(Outcome::ListFailed {
            status: None,
            retry_after: None,
        });
        m.step(Outcome::Waited);
    }
    m.step(listed("3"));
    at(&mut m, "3").step(ended(Duration::from_secs(1)));
    let d = waits(&at(&mut m, "3").step(Outcome::WatchFailed {
        retry_after: None,
        relist: false,
        healthy: false,
    }));
    assert!(d <= Duration::from_secs(1), "{d:?}");
}

#[test]
fn error_events_are_told_apart_by_code_or_reason() {
    use WatchError::*;
    let cases = [
        (Some(410), Some("Expired"), Expired),
        (Some(410), None, Expired),
        (None, Some("Gone"), Expired),
        (None, Some("Expired"), Expired),
        (Some(429), Some("TooManyRequests"), TooManyRequests),
        (Some(429), None, TooManyRequests),
        (None, Some("TooManyRequests"), TooManyRequests),
        (Some(500), Some("InternalError"), InternalError),
        (Some(500), None, InternalError),
        (None, Some("InternalError"), InternalError),
        (Some(403), Some("Forbidden"), Other),
        (Some(400), Some("BadRequest"), Other),
        (Some(422), Some("Invalid"), Other),
        (Some(504), Some("Timeout"), Other),
        (Some(503), Some("ServiceUnavailable"), Other),
        (None, None, Other),
    ];
    for (code, reason, expected) in cases {
        assert_eq!(
            WatchError::classify(code, reason),
            expected,
            "{code:?} {reason:?}"
        );
    }
}

#[test]
fn an_expired_error_event_relists_at_once() {
    let mut m = watching(Source::Endpoints);
    assert_eq!(
        at(&mut m, "8").step(error_event(WatchError::Expired)),
        list(ENDPOINTS)
    );
}

#[test]
fn too_many_requests_in_a_watch_backs_off_and_resumes_from_the_same_version() {
    let mut m = watching(Source::Endpoints);
    for _ in 0..10 {
        waits(&at(&mut m, "8").step(error_event(WatchError::TooManyRequests)));
        assert_eq!(m.step(Outcome::Waited), watch("8"));
    }
}

#[test]
fn internal_errors_resume_a_few_times_in_a_row_then_relist() {
    let mut m = watching(Source::Endpoints);
    for _ in 0..MAX_INTERNAL_ERROR_RESUMES {
        waits(&at(&mut m, "8").step(error_event(WatchError::InternalError)));
        assert_eq!(m.step(Outcome::Waited), watch("8"));
    }
    waits(&at(&mut m, "8").step(error_event(WatchError::InternalError)));
    assert_eq!(m.step(Outcome::Waited), list(ENDPOINTS));
    // The count starts again after the list.
    m.step(listed("9"));
    waits(&at(&mut m, "9").step(error_event(WatchError::InternalError)));
    assert_eq!(m.step(Outcome::Waited), watch("9"));
}

#[test]
fn a_watch_that_progressed_between_internal_errors_keeps_resuming() {
    let mut m = watching(Source::Endpoints);
    for n in 0..(MAX_INTERNAL_ERROR_RESUMES * 3) {
        let rv = n.to_string();
        waits(&at(&mut m, &rv).step(Outcome::ErrorEvent {
            error: WatchError::InternalError,
            healthy: true,
        }));
        assert_eq!(m.step(Outcome::Waited), watch(&rv));
    }
}

#[test]
fn any_other_error_event_relists_after_a_backoff() {
    let mut m = watching(Source::Endpoints);
    for _ in 0..5 {
        let d = waits(&at(&mut m, "8").step(error_event(WatchError::Other)));
        assert!(d >= Duration::from_millis(500), "{d:?}");
        assert_eq!(m.step(Outcome::Waited), list(ENDPOINTS));
        m.step(listed("8"));
    }
}

#[test]
fn repeated_error_events_without_progress_grow_the_backoff() {
    let mut m = watching(Source::Endpoints);
    let mut ceilings = Vec::new();
    for n in 0..6u32 {
        let d = waits(&at(&mut m, "8").step(error_event(WatchError::Other)));
        let ceiling = Duration::from_secs(1 << n).min(Duration::from_secs(30));
        assert!(d <= ceiling, "attempt {n}: {d:?}");
        ceilings.push(ceiling);
        m.step(Outcome::Waited);
        m.step(listed("8"));
    }
    assert_eq!(ceilings.last(), Some(&Duration::from_secs(30)));
}

#[test]
fn endpoint_slices_and_auto_start_with_slices() {
    assert_eq!(
        machine_for(Source::EndpointSlices).step(Outcome::Start),
        list(SLICES)
    );
    assert_eq!(machine_for(Source::Auto).step(Outcome::Start), list(SLICES));
    let mut m = watching(Source::EndpointSlices);
    assert_eq!(
        at(&mut m, "6").step(ended(Duration::ZERO)),
        watch_of(SLICES, "6")
    );
}

#[test]
fn auto_falls_back_to_endpoints_at_once_when_slices_are_forbidden_or_missing() {
    for status in [403, 404] {
        let mut m = machine_for(Source::Auto);
        m.step(Outcome::Start);
        assert_eq!(m.step(list_failed(status)), list(ENDPOINTS));
        assert_eq!(m.slices_refused(), Some(status));
        assert_eq!(m.step(listed("7")), watch("7"));
    }
}

#[test]
fn auto_does_not_fall_back_on_other_failures() {
    for status in [401, 429, 500, 503] {
        let mut m = machine_for(Source::Auto);
        m.step(Outcome::Start);
        waits(&m.step(list_failed(status)));
        assert_eq!(m.slices_refused(), None);
        assert_eq!(m.step(Outcome::Waited), list(SLICES));
    }
    let mut m = machine_for(Source::Auto);
    m.step(Outcome::Start);
    waits(&m.step(Outcome::ListFailed {
        status: None,
        retry_after: None,
    }));
}

#[test]
fn an_explicit_source_never_falls_back() {
    for source in [Source::EndpointSlices, Source::Endpoints] {
        let mut m = machine_for(source);
        let first = m.step(Outcome::Start);
        for status in [403, 404] {
            waits(&m.step(list_failed(status)));
            assert_eq!(m.step(Outcome::Waited), first);
            assert_eq!(m.slices_refused(), None);
        }
    }
}

#[test]
fn auto_keeps_trying_slices_first_while_both_are_forbidden() {
    let mut m = machine_for(Source::Auto);
    m.step(Outcome::Start);
    for _ in 0..5 {
        assert_eq!(m.step(list_failed(403)), list(ENDPOINTS));
        waits(&m.step(list_failed(403)));
        assert_eq!(m.slices_refused(), Some(403));
        assert_eq!(m.step(Outcome::Waited), list(SLICES));
    }
    // The Role is fixed for slices: they resolve and the fallback is over.
    assert_eq!(m.step(listed("12")), watch_of(SLICES, "12"));
    assert_eq!(m.slices_refused(), None);
}

#[test]
fn auto_on_the_fallback_returns_to_slices_at_the_next_relist() {
    let mut m = machine_for(Source::Auto);
    m.step(Outcome::Start);
    m.step(list_failed(403));
    assert_eq!(m.step(listed("7")), watch("7"));
    // A 410 relists: slices first.
    assert_eq!(m.step(Outcome::Expired { healthy: true }), list(SLICES));
    assert_eq!(m.step(listed("20")), watch_of(SLICES, "20"));
    assert_eq!(m.slices_refused(), None);
    // And a failed list on the fallback retries slices first too.
    let mut m = machine_for(Source::Auto);
    m.step(Outcome::Start);
    m.step(list_failed(404));
    waits(&m.step(list_failed(500)));
    assert_eq!(m.step(Outcome::Waited), list(SLICES));
}

#[test]
fn auto_on_the_fallback_probes_slices_after_enough_watch_time() {
    let mut m = machine_for(Source::Auto);
    m.step(Outcome::Start);
    m.step(list_failed(403));
    m.step(listed("7"));
    let step = PROBE_SLICES_EVERY / 3;
    assert_eq!(at(&mut m, "8").step(ended(step)), watch("8"));
    assert_eq!(at(&mut m, "9").step(ended(step)), watch("9"));
    // Failures and quick ends add nothing.
    waits(&at(&mut m, "9").step(Outcome::WatchEnded {
        healthy: false,
        lasted: PROBE_SLICES_EVERY,
    }));
    assert_eq!(m.step(Outcome::Waited), watch("9"));
    assert_eq!(at(&mut m, "10").step(ended(step)), list(SLICES));
    assert_eq!(
        m.phase(),
        &Phase::Probing {
            resume: "10".into()
        }
    );
    // Still refused: back to the Endpoints watch where it was, without a wait or a list.
    assert_eq!(m.step(list_failed(403)), watch("10"));
    assert_eq!(m.slices_refused(), Some(403));
    // A probe that fails otherwise resumes too, and the clock starts again each time.
    assert_eq!(at(&mut m, "11").step(ended(step * 2)), watch("11"));
    assert_eq!(at(&mut m, "12").step(ended(step)), list(SLICES));
    assert_eq!(m.step(list_failed(500)), watch("12"));
    assert_eq!(
        at(&mut m, "13").step(ended(PROBE_SLICES_EVERY)),
        list(SLICES)
    );
    // Allowed now: slices from here on, and no more probes.
    assert_eq!(m.step(listed("14")), watch_of(SLICES, "14"));
    assert_eq!(m.slices_refused(), None);
    assert_eq!(
        at(&mut m, "15").step(ended(PROBE_SLICES_EVERY * 2)),
        watch_of(SLICES, "15")
    );
}

#[test]
fn a_probe_is_not_made_when_slices_are_in_use_or_the_source_is_endpoints() {
    let mut m = watching(Source::Auto);
    assert_eq!(
        at(&mut m, "6").step(ended(PROBE_SLICES_EVERY * 2)),
        watch_of(SLICES, "6")
    );
    let mut m = watching(Source::Endpoints);
    assert_eq!(
        at(&mut m, "6").step(ended(PROBE_SLICES_EVERY * 2)),
        watch("6")
    );
}

#[test]
fn watches_after_the_fallback_watch_endpoints_until_the_next_list() {
    let mut m = machine_for(Source::Auto);
    m.step(Outcome::Start);
    m.step(list_failed(404));
    m.step(listed("7"));
    waits(&at(&mut m, "9").step(Outcome::WatchFailed {
        retry_after: None,
        relist: false,
        healthy: false,
    }));
    assert_eq!(m.step(Outcome::Waited), watch("9"));
    waits(&at(&mut m, "9").step(error_event(WatchError::TooManyRequests)));
    assert_eq!(m.step(Outcome::Waited), watch("9"));
}

fn counts(reconnects: u64, relists: u64) -> Counts {
    Counts {
        reconnects,
        relists,
    }
}

#[test]
fn events_advance_the_resource_version_the_next_watch_resumes_from() {
    let mut m = watching(Source::Endpoints);
    assert_eq!(m.resource_version(), Some("5"));
    m.advance(Some("6".into()));
    // A bookmark or event without one, or with an empty one, keeps the last.
    m.advance(None);
    m.advance(Some(String::new()));
    assert_eq!(m.resource_version(), Some("6"));
    assert_eq!(m.step(ended(Duration::from_secs(1))), watch("6"));
    m.advance(Some("7".into()));
    waits(&m.step(Outcome::WatchFailed {
        retry_after: None,
        relist: false,
        healthy: true,
    }));
    assert_eq!(m.resource_version(), None, "backing off is not watching");
    assert_eq!(m.step(Outcome::Waited), watch("7"));
}

#[test]
fn a_resource_version_reported_outside_a_watch_changes_nothing() {
    let mut m = machine();
    m.step(Outcome::Start);
    m.advance(Some("9".into()));
    assert_eq!(m.resource_version(), None);
    assert_eq!(m.step(listed("3")), watch("3"));
    waits(&m.step(error_event(WatchError::TooManyRequests)));
    m.advance(Some("9".into()));
    assert_eq!(m.step(Outcome::Waited), watch("3"));
}

#[test]
fn the_end_of_a_watch_that_was_not_under_way_lists_afresh() {
    let mut m = machine();
    m.step(Outcome::Start);
    assert_eq!(m.step(ended(Duration::from_secs(1))), list(ENDPOINTS));
    waits(&m.step(Outcome::WatchEnded {
        healthy: false,
        lasted: Duration::ZERO,
    }));
    assert_eq!(m.step(Outcome::Waited), list(ENDPOINTS));
}

#[test]
fn the_first_list_and_the_watch_after_a_list_are_neither_reconnects_nor_relists() {
    let mut m = machine();
    m.step(Outcome::Start);
    assert_eq!(m.counts(), counts(0, 0));
    m.step(listed("1"));
    assert_eq!(m.counts(), counts(0, 0));
}

#[test]
fn every_request_after_an_end_or_a_failure_is_a_reconnect_and_every_later_list_a_relist() {
    let mut m = watching(Source::Endpoints);
    assert_eq!(m.step(ended(Duration::from_secs(1))), watch("5"));
    assert_eq!(m.counts(), counts(1, 0));
    assert_eq!(m.step(Outcome::Expired { healthy: true }), list(ENDPOINTS));
    assert_eq!(m.counts(), counts(2, 1));
    m.step(listed("6"));
    assert_eq!(m.counts(), counts(2, 1), "the watch after a list");
    // A wait is no request; the request after it is.
    waits(&m.step(Outcome::WatchFailed {
        retry_after: None,
        relist: false,
        healthy: false,
    }));
    assert_eq!(m.counts(), counts(2, 1));
    assert_eq!(m.step(Outcome::Waited), watch("6"));
    assert_eq!(m.counts(), counts(3, 1));
    // A failed first list: its retry is both.
    let mut m = machine();
    m.step(Outcome::Start);
    waits(&m.step(list_failed(500)));
    assert_eq!(m.step(Outcome::Waited), list(ENDPOINTS));
    assert_eq!(m.counts(), counts(1, 1));
}

#[test]
fn autos_fallback_list_is_the_same_attempt_and_a_probe_is_a_relist() {
    let mut m = machine_for(Source::Auto);
    m.step(Outcome::Start);
    assert_eq!(m.step(list_failed(403)), list(ENDPOINTS));
    assert_eq!(m.counts(), counts(0, 0), "the fallback is the same attempt");
    m.step(listed("7"));
    assert_eq!(
        at(&mut m, "8").step(ended(PROBE_SLICES_EVERY)),
        list(SLICES)
    );
    assert_eq!(m.counts(), counts(1, 1), "a probe is a relist");
    assert_eq!(m.step(list_failed(403)), watch("8"));
    assert_eq!(
        m.counts(),
        counts(2, 1),
        "resuming after the probe reconnects"
    );
    assert_eq!(m.step(Outcome::Expired { healthy: true }), list(SLICES));
    assert_eq!(m.counts(), counts(3, 2));
    assert_eq!(m.step(list_failed(404)), list(ENDPOINTS));
    assert_eq!(
        m.counts(),
        counts(3, 2),
        "falling back again is still one attempt"
    );
    // A refused list of an explicit source is a failure: its retry counts.
    let mut m = machine_for(Source::Endpoints);
    m.step(Outcome::Start);
    waits(&m.step(list_failed(403)));
    assert_eq!(m.step(Outcome::Waited), list(ENDPOINTS));
    assert_eq!(m.counts(), counts(1, 1));
}
