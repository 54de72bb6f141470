//! Tests of the LAPI test harness itself: the real LAPI ([`Lapi`]) behaves as the other tests
//! assume, the guard leaves no process behind, and each fault of the FAKE LAPI ([`FakeLapi`])
//! produces what it says.

use std::io;
use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use blocker_tests::fake_lapi::{FakeLapi, Fault, HUGE_DECISION_COUNT, decision};
use blocker_tests::lapi::{
    HttpResponse, ImportDecision, Lapi, get_decisions_stream, http_get, http_request,
};
use serde_json::{Value, json};

const STREAM: &str = "/v1/decisions/stream";

/// The items of one list of a stream answer; LAPI sends an empty list as `null`.
fn items<'a>(answer: &'a Value, list: &str) -> &'a [Value] {
    match &answer[list] {
        Value::Null => &[],
        Value::Array(items) => items,
        other => panic!("`{list}` is neither null nor a list: {other}"),
    }
}

fn find<'a>(list: &'a [Value], value: &str) -> Option<&'a Value> {
    list.iter().find(|d| d["value"] == value)
}

/// A successful stream pull, parsed.
fn pull(base_url: &str, api_key: &str, startup: bool) -> Value {
    let answer = get_decisions_stream(base_url, api_key, startup).expect("stream request");
    assert_eq!(
        answer.status,
        200,
        "body: {}",
        String::from_utf8_lossy(&answer.body)
    );
    answer.json().expect("stream answer is JSON")
}

#[test]
fn real_lapi_streams_cscli_decisions_and_survives_restart() {
    let started = Instant::now();
    let lapi = Lapi::start();
    eprintln!("LAPI ready in {:?}", started.elapsed());
    let key = lapi.add_bouncer("harness");
    let url = lapi.url();

    let unknown_key = get_decisions_stream(&url, "not-a-key", true).expect("stream request");
    assert_eq!(unknown_key.status, 403);
    let first = pull(&url, &key, true);
    assert!(items(&first, "new").is_empty(), "{first}");
    assert!(items(&first, "deleted").is_empty(), "{first}");

    let cscli = Instant::now();
    lapi.add_decision_ip("203.0.113.7", "4h", "ban");
    eprintln!("cscli decisions add took {:?}", cscli.elapsed());
    lapi.add_decision_range("198.51.100.0/24", "4h", "ban");
    let delta = pull(&url, &key, false);
    let new = items(&delta, "new");
    assert_eq!(new.len(), 2, "{delta}");
    let ip = find(new, "203.0.113.7").expect("the IP decision");
    assert_eq!(ip["scope"], "Ip");
    assert_eq!(ip["type"], "ban");
    assert_eq!(ip["origin"], "cscli");
    let range = find(new, "198.51.100.0/24").expect("the range decision");
    assert_eq!(range["scope"], "Range");

    lapi.delete_decisions_ip("203.0.113.7");
    let delta = pull(&url, &key, false);
    assert!(items(&delta, "new").is_empty(), "{delta}");
    assert!(
        find(items(&delta, "deleted"), "203.0.113.7").is_some(),
        "{delta}"
    );

    let stop = Instant::now();
    lapi.stop();
    eprintln!("LAPI stopped (SIGTERM) in {:?}", stop.elapsed());
    assert!(lapi.pid().is_none());
    let refused = get_decisions_stream(&url, &key, true).expect_err("LAPI is stopped");
    assert_eq!(refused.kind(), io::ErrorKind::ConnectionRefused);
    let restart = Instant::now();
    lapi.restart();
    eprintln!("LAPI restarted in {:?}", restart.elapsed());

    // Same port, same database: the key, the range and the cscli machine all survived.
    let after = pull(&url, &key, true);
    assert!(
        find(items(&after, "new"), "198.51.100.0/24").is_some(),
        "{after}"
    );
    assert!(
        find(items(&after, "new"), "203.0.113.7").is_none(),
        "{after}"
    );
    // LAPI 1.4.6 lists deleted decisions under `deleted` even on a startup pull.
    assert!(
        find(items(&after, "deleted"), "203.0.113.7").is_some(),
        "{after}"
    );
    lapi.add_decision_ip("203.0.113.8", "1h", "captcha");
    let delta = pull(&url, &key, false);
    let captcha = find(items(&delta, "new"), "203.0.113.8").expect("decision after restart");
    assert_eq!(captcha["type"], "captcha");

    lapi.delete_decisions_range("198.51.100.0/24");
    let delta = pull(&url, &key, false);
    assert!(
        find(items(&delta, "deleted"), "198.51.100.0/24").is_some(),
        "{delta}"
    );
}

#[test]
fn real_lapi_imports_decisions_in_bulk() {
    const COUNT: u32 = 10_000;
    let lapi = Lapi::start();
    let key = lapi.add_bouncer("bulk");
    let base = u32::from(Ipv4Addr::new(198, 18, 0, 0));
    let rows = (0..COUNT)
        .map(|i| ImportDecision::new(Ipv4Addr::from(base + i), "4h", "ban"))
        .chain([ImportDecision::new("2001:db8:1::/48", "4h", "ban")]);
    let import = Instant::now();
    let written = lapi.import_decisions(rows);
    eprintln!(
        "cscli decisions import of {written} took {:?}",
        import.elapsed()
    );

    let all = pull(&lapi.url(), &key, true);
    let new = items(&all, "new");
    assert_eq!(new.len(), written);
    assert_eq!(new.len(), COUNT as usize + 1);
    let range = find(new, "2001:db8:1::/48").expect("the imported range");
    assert_eq!(range["scope"], "Range");
    assert_eq!(
        find(new, "198.18.0.0").expect("an imported IP")["scope"],
        "Ip"
    );
}

#[test]
fn lapi_guard_kills_crowdsec_when_the_test_panics() {
    let (sender, receiver) = mpsc::channel();
    let outcome = thread::spawn(move || {
        let lapi = Lapi::start();
        let pid = lapi.pid().expect("LAPI runs");
        sender
            .send((pid, lapi.config_path().to_owned()))
            .expect("send");
        panic!("deliberate panic: the guard must clean up while unwinding");
    })
    .join();
    assert!(outcome.is_err());
    let (pid, config) = receiver.recv().expect("the LAPI was started");
    // Drop reaps the child, so its /proc entry is gone too.
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "crowdsec {pid} leaked"
    );
    assert!(!config.exists(), "{} was left behind", config.display());
}

#[test]
fn http_helper_refuses_non_loopback_addresses() {
    for url in [
        "http://198.51.100.1:8080/",
        "http://localhost:8080/",
        "https://[::1]:1/",
    ] {
        let refused = http_get(url, &[]).expect_err(url);
        assert_eq!(refused.kind(), io::ErrorKind::InvalidInput, "{url}");
    }
}

#[test]
fn fake_lapi_answers_like_lapi_and_records_requests() {
    let fake = FakeLapi::start();
    let url = format!("{}{STREAM}?startup=true", fake.url());
    let headers = [("X-Api-Key", "k3y"), ("User-Agent", "harness/1")];
    fake.set_decisions(
        vec![
            decision("Ip", "203.0.113.7", "ban", "4h"),
            decision("Range", "198.51.100.0/24", "ban", "4h"),
        ],
        vec![],
    );

    let startup = http_get(&url, &headers)
        .expect("startup pull")
        .json()
        .expect("JSON");
    assert_eq!(items(&startup, "new").len(), 2, "{startup}");
    // The startup pull handed the queued delta over.
    assert_eq!(
        pull(&fake.url(), "k3y", false),
        json!({"deleted": null, "new": null})
    );

    fake.set_decisions(vec![], vec![decision("Ip", "203.0.113.7", "ban", "4h")]);
    let delta = pull(&fake.url(), "k3y", false);
    assert!(
        find(items(&delta, "deleted"), "203.0.113.7").is_some(),
        "{delta}"
    );
    let startup = pull(&fake.url(), "k3y", true);
    assert_eq!(items(&startup, "new").len(), 1, "{startup}");

    // HEAD answers 200 without a body and, like LAPI, hands the queued delta over.
    fake.set_decisions(vec![decision("Ip", "203.0.113.9", "ban", "4h")], vec![]);
    let head = http_request("HEAD", &url, &headers, &[], Duration::from_secs(5)).expect("HEAD");
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    assert!(items(&pull(&fake.url(), "k3y", false), "new").is_empty());

    let unknown = http_get(&format!("{}/v1/alerts", fake.url()), &[]).expect("GET");
    assert_eq!(unknown.status, 404);

    let requests = fake.requests();
    assert_eq!(requests.len(), 7);
    let first = &requests[0];
    assert_eq!(first.method, "GET");
    assert_eq!(first.path(), STREAM);
    assert_eq!(first.query_param("startup").as_deref(), Some("true"));
    assert_eq!(first.header("x-api-key"), Some("k3y"));
    assert_eq!(first.header("user-agent"), Some("harness/1"));
    assert_eq!(requests[4].method, "HEAD");
}

#[test]
fn fake_lapi_records_usage_metrics_or_answers_404() {
    let fake = FakeLapi::start();
    let url = format!("{}/v1/usage-metrics", fake.url());
    let body = json!({"remediation_components": [{"type": "blocker"}]});
    let post = |url: &str| {
        let bytes = serde_json::to_vec(&body).expect("JSON");
        let headers = [("Content-Type", "application/json")];
        http_request("POST", url, &headers, &bytes, Duration::from_secs(5)).expect("POST")
    };
    assert_eq!(post(&url).status, 201);
    assert_eq!(fake.usage_metrics(), vec![body.clone()]);

    fake.set_usage_metrics_supported(false);
    assert_eq!(post(&url).status, 404);
    assert_eq!(fake.usage_metrics().len(), 1);
    assert_eq!(fake.requests().len(), 2);
}

/// A fake LAPI holding two valid decisions, misbehaving with `fault`.
fn faulty(fault: Fault) -> FakeLapi {
    let fake = FakeLapi::start();
    fake.set_decisions(
        vec![
            decision("Ip", "203.0.113.7", "ban", "4h"),
            decision("Range", "198.51.100.0/24", "ban", "4h"),
        ],
        vec![decision("Ip", "203.0.113.99", "ban", "4h")],
    );
    fake.set_fault(fault);
    fake
}

fn get_stream(fake: &FakeLapi, startup: bool) -> io::Result<HttpResponse> {
    get_decisions_stream(&fake.url(), "k3y", startup)
}

#[test]
fn fake_lapi_status_fault_applies_to_get_and_head() {
    let fake = faulty(Fault::Status(500));
    let answer = get_stream(&fake, true).expect("GET");
    assert_eq!(answer.status, 500);
    assert!(answer.json().expect("JSON")["message"].is_string());

    fake.set_fault(Fault::Status(403));
    let url = format!("{}{STREAM}", fake.url());
    let head = http_request("HEAD", &url, &[], &[], Duration::from_secs(5)).expect("HEAD");
    assert_eq!(head.status, 403);

    // The failed pulls did not consume the queued delta.
    fake.clear_fault();
    let delta = pull(&fake.url(), "k3y", false);
    assert_eq!(items(&delta, "new").len(), 2, "{delta}");
}

#[test]
fn fake_lapi_slow_fault_outlasts_the_client_timeout() {
    let fake = faulty(Fault::Slow(Duration::from_secs(3)));
    let url = format!("{}{STREAM}", fake.url());
    let started = Instant::now();
    let error = http_request("GET", &url, &[], &[], Duration::from_millis(300))
        .expect_err("the answer comes after the timeout");
    assert!(
        matches!(
            error.kind(),
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
        ),
        "{error:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[test]
fn fake_lapi_reset_mid_body_is_a_read_error() {
    let fake = faulty(Fault::ResetMidBody);
    let error = get_stream(&fake, true).expect_err("the connection is reset mid-body");
    assert!(
        matches!(
            error.kind(),
            io::ErrorKind::ConnectionReset | io::ErrorKind::UnexpectedEof
        ),
        "{error:?}"
    );
}

#[test]
fn fake_lapi_truncated_body_is_complete_but_not_json() {
    let fake = faulty(Fault::Truncated);
    let answer = get_stream(&fake, true).expect("the transfer itself is complete");
    assert_eq!(answer.status, 200);
    assert_eq!(
        answer.header("content-length"),
        Some(answer.body.len().to_string().as_str())
    );
    assert!(answer.json().expect_err("cut JSON").is_eof());
}

#[test]
fn fake_lapi_garbage_is_neither_json_nor_utf8() {
    let fake = faulty(Fault::Garbage);
    let answer = get_stream(&fake, true).expect("GET");
    assert_eq!(answer.status, 200);
    assert!(answer.json().is_err());
    assert!(String::from_utf8(answer.body).is_err());
}

#[test]
fn fake_lapi_wrong_types_parse_as_json_of_the_wrong_shape() {
    let fake = faulty(Fault::WrongTopLevelTypes);
    let answer = get_stream(&fake, true).expect("GET").json().expect("JSON");
    assert!(
        answer["new"].is_string() && answer["deleted"].is_number(),
        "{answer}"
    );

    fake.set_fault(Fault::WrongItemTypes);
    let answer = get_stream(&fake, true).expect("GET").json().expect("JSON");
    let new = items(&answer, "new");
    assert!(
        new[0]["value"].is_number() && new[0]["scope"].is_boolean(),
        "{answer}"
    );
    assert_eq!(new[1]["value"], "203.0.113.7");
    assert!(items(&answer, "deleted")[0]["value"].is_array(), "{answer}");
}

#[test]
fn fake_lapi_huge_answer_is_valid_and_chunked() {
    // Typed, so that the check does not hold ~400,000 `Value` maps.
    #[derive(serde::Deserialize)]
    struct Item {
        scope: String,
        value: String,
    }
    #[derive(serde::Deserialize)]
    struct Answer {
        new: Vec<Item>,
    }
    let fake = faulty(Fault::Huge);
    let started = Instant::now();
    let answer = get_stream(&fake, true).expect("GET");
    eprintln!(
        "huge answer: {} bytes in {:?}",
        answer.body.len(),
        started.elapsed()
    );
    assert_eq!(answer.header("transfer-encoding"), Some("chunked"));
    assert!(
        answer.body.len() > 45_000_000,
        "{} bytes",
        answer.body.len()
    );
    let Answer { new } = serde_json::from_slice(&answer.body).expect("valid JSON");
    assert_eq!(new.len(), HUGE_DECISION_COUNT);
    assert_eq!(new[0].value, "198.18.0.0");
    assert!(new.iter().all(|d| d.scope == "Ip"));
}

#[test]
fn fake_lapi_mixes_junk_with_valid_decisions() {
    let fake = faulty(Fault::UnknownScopes);
    let answer = pull(&fake.url(), "k3y", true);
    let new = items(&answer, "new");
    assert_eq!(new[0]["scope"], "Country", "junk comes first: {answer}");
    assert!(new.iter().any(|d| d["scope"] == "AS"), "{answer}");
    assert!(find(new, "203.0.113.7").is_some() && find(new, "198.51.100.0/24").is_some());

    fake.set_fault(Fault::InvalidIps);
    let answer = pull(&fake.url(), "k3y", true);
    let new = items(&answer, "new");
    assert!(find(new, "999.1.1.1").is_some() && find(new, "198.51.100.0/33").is_some());
    assert!(find(new, "203.0.113.7").is_some() && find(new, "198.51.100.0/24").is_some());
    assert!(
        !items(&answer, "deleted").is_empty(),
        "junk deletions too: {answer}"
    );
}
