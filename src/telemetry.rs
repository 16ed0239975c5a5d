//! What the library tells the [`metrics`](https://docs.rs/metrics) facade (feature `metrics`):
//! nothing is kept unless the application installs a recorder, and without the feature these
//! are empty functions. Names end in `_total` (counters) and `_seconds` (histograms); every
//! label takes one of a few fixed values.
//!
//! | metric | labels |
//! |---|---|
//! | `ghauthz_decisions_total` | `action` (`view`, `edit`, `deploy`, `delete`), `outcome` (`allow`, `deny`, `error`) |
//! | `ghauthz_cache_lookups_total` | `result` (`hit`, `miss`) |
//! | `ghauthz_github_requests_total` | `status` (`200`, `304`, `404`, `401`, `403`, `429`, `5xx`, `other`, `failed`) |
//! | `ghauthz_github_rate_limit_remaining` (gauge) | |
//! | `ghauthz_webhook_deliveries_total` | `event` (one of [`WEBHOOK_EVENTS`](crate::WEBHOOK_EVENTS), else `other`), `outcome` (`applied`, `duplicate`, `ignored`, `refused`) |
//! | `ghauthz_link_redemptions_total` | `outcome` (`redeemed`, or the refusal's kind) |
//! | `ghauthz_change_feed_listening` (gauge) | 1 while the store's change feed is heard, 0 otherwise |
//! | `ghauthz_link_mails_total` | `outcome` (`sent`, `failed`) |
//! | `ghauthz_link_pages_total` | `event` (`opened`: a link's page shown; `redeemed`: its Continue button used; `unredeemed`: a page opened whose link expired unused, what a mail scanner's visit looks like) |
//!
//! `ghauthz serve` adds `ghauthz_decision_duration_seconds` (`action`) and
//! `ghauthz_http_requests_total` (`route`, `status`).

use crate::core::policy::Capability;

/// Says what each metric means, for an exporter that shows help texts. Once, at start.
pub fn describe() {
    #[cfg(feature = "metrics")]
    {
        use metrics::{describe_counter, describe_gauge};
        describe_counter!(
            "ghauthz_decisions_total",
            "Checks answered, by action and outcome (error: could not decide)."
        );
        describe_counter!("ghauthz_cache_lookups_total", "Checks answered from memory (hit) or not (miss).");
        describe_counter!("ghauthz_github_requests_total", "Requests to GitHub's API, by the status answered.");
        describe_gauge!(
            "ghauthz_github_rate_limit_remaining",
            "GitHub's rate-limit budget left, as its last answer said."
        );
        describe_counter!("ghauthz_webhook_deliveries_total", "GitHub webhook deliveries, by event and outcome.");
        describe_counter!("ghauthz_link_redemptions_total", "Sign-in link redemptions, by outcome.");
        describe_gauge!("ghauthz_change_feed_listening", "1 while the store's change feed is heard.");
        describe_counter!("ghauthz_link_mails_total", "Sign-in link messages, by outcome.");
        describe_counter!(
            "ghauthz_link_pages_total",
            "Sign-in link pages: opened, redeemed, and opened but left to expire unused."
        );
        #[cfg(feature = "http")]
        {
            metrics::describe_histogram!(
                "ghauthz_decision_duration_seconds",
                metrics::Unit::Seconds,
                "Time to answer one AuthZEN evaluation, by action."
            );
            describe_counter!("ghauthz_http_requests_total", "HTTP requests answered, by route and status.");
        }
    }
}

/// Counts one on `name` with `labels`, building nothing on the heap: the check's hit path
/// calls it.
#[cfg(feature = "metrics")]
#[inline]
fn count(name: &'static str, labels: &'static [metrics::Label]) {
    static META: metrics::Metadata<'static> =
        metrics::Metadata::new(module_path!(), metrics::Level::INFO, Some(module_path!()));
    let key = metrics::Key::from_static_parts(name, labels);
    metrics::with_recorder(|r| r.register_counter(&key, &META)).increment(1);
}

#[cfg(feature = "metrics")]
const fn label(key: &'static str, value: &'static str) -> metrics::Label {
    metrics::Label::from_static_parts(key, value)
}

/// `ghauthz_decisions_total`'s labels, by capability (in `Capability::ALL`'s order) and outcome
/// (allow, deny, error).
#[cfg(feature = "metrics")]
static DECISION_LABELS: [[[metrics::Label; 2]; 3]; 4] = {
    macro_rules! of {
        ($action:literal) => {
            [
                [label("action", $action), label("outcome", "allow")],
                [label("action", $action), label("outcome", "deny")],
                [label("action", $action), label("outcome", "error")],
            ]
        };
    }
    [of!("view"), of!("edit"), of!("deploy"), of!("delete")]
};

/// A check answered (`Some(allowed)`) or not (`None`: could not decide).
#[inline]
pub(crate) fn decision(cap: Capability, allowed: Option<bool>) {
    #[cfg(feature = "metrics")]
    {
        let action = match cap {
            Capability::View => 0,
            Capability::Edit => 1,
            Capability::Deploy => 2,
            Capability::Delete => 3,
        };
        let outcome = match allowed {
            Some(true) => 0,
            Some(false) => 1,
            None => 2,
        };
        count("ghauthz_decisions_total", &DECISION_LABELS[action][outcome]);
    }
    #[cfg(not(feature = "metrics"))]
    let _ = (cap, allowed);
}

/// A check answered from memory, or not.
#[inline]
pub(crate) fn cache_lookup(hit: bool) {
    #[cfg(feature = "metrics")]
    {
        static HIT: [metrics::Label; 1] = [label("result", "hit")];
        static MISS: [metrics::Label; 1] = [label("result", "miss")];
        count("ghauthz_cache_lookups_total", if hit { &HIT } else { &MISS });
    }
    #[cfg(not(feature = "metrics"))]
    let _ = hit;
}

/// GitHub answered `status` (`None`: no answer), stating `remaining` requests left to the
/// credential asked with: installation `installation`'s (an App across its installations), or
/// the one credential's.
pub(crate) fn github_answer(status: Option<u16>, remaining: Option<u64>, installation: Option<u64>) {
    #[cfg(feature = "metrics")]
    {
        let status = match status {
            Some(200) => "200",
            Some(304) => "304",
            Some(404) => "404",
            Some(401) => "401",
            Some(403) => "403",
            Some(429) => "429",
            Some(500..=599) => "5xx",
            Some(_) => "other",
            None => "failed",
        };
        metrics::counter!("ghauthz_github_requests_total", "status" => status).increment(1);
        match (remaining, installation) {
            (Some(remaining), None) => metrics::gauge!("ghauthz_github_rate_limit_remaining").set(remaining as f64),
            // An App across its installations: each installation's budget is its own.
            (Some(remaining), Some(id)) => {
                metrics::gauge!("ghauthz_github_rate_limit_remaining", "installation" => id.to_string())
                    .set(remaining as f64);
            }
            (None, _) => {}
        }
    }
    #[cfg(not(feature = "metrics"))]
    let _ = (status, remaining, installation);
}

/// A webhook delivery of `event`, and what came of it.
pub(crate) fn webhook(event: Option<&str>, outcome: &'static str) {
    #[cfg(feature = "metrics")]
    {
        let event = event.and_then(|e| crate::webhook::WEBHOOK_EVENTS.iter().find(|k| **k == e)).copied();
        metrics::counter!("ghauthz_webhook_deliveries_total", "event" => event.unwrap_or("other"), "outcome" => outcome)
            .increment(1);
    }
    #[cfg(not(feature = "metrics"))]
    let _ = (event, outcome);
}

/// A link redemption, and what came of it.
pub(crate) fn link_redemption(outcome: &'static str) {
    #[cfg(feature = "metrics")]
    metrics::counter!("ghauthz_link_redemptions_total", "outcome" => outcome).increment(1);
    #[cfg(not(feature = "metrics"))]
    let _ = outcome;
}

/// A link's message, sent or not.
pub(crate) fn link_mail(outcome: &'static str) {
    #[cfg(feature = "metrics")]
    metrics::counter!("ghauthz_link_mails_total", "outcome" => outcome).increment(1);
    #[cfg(not(feature = "metrics"))]
    let _ = outcome;
}

/// A link's page: `opened`, `redeemed` or `unredeemed`, by `n`.
#[cfg(feature = "http")]
pub(crate) fn link_page(event: &'static str, n: u64) {
    metrics::counter!("ghauthz_link_pages_total", "event" => event).increment(n);
}

/// The store's change feed is heard, or no longer.
pub(crate) fn feed_listening(listening: bool) {
    #[cfg(feature = "metrics")]
    metrics::gauge!("ghauthz_change_feed_listening").set(if listening { 1.0 } else { 0.0 });
    #[cfg(not(feature = "metrics"))]
    let _ = listening;
}
