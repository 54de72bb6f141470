//! blocker's LAPI client against Debian's real `CrowdSec` LAPI 1.4.6 served over HTTPS:
//! TLS client certificate auth, server certificate verification, refused client
//! certificates, and API keys over HTTPS. Certificates are made per test with the `openssl`
//! CLI ([`blocker_tests::tls`]); LAPI listens on 127.0.0.1 only.
//!
//! What LAPI 1.4.6 does here (checked against the real daemon):
//! - `bouncers_allowed_ou` has no default in the code (`bouncer-ou` is only in the docs and
//!   the docker image's config): without it every bouncer certificate gets 403;
//! - a certificate bouncer needs no `cscli bouncers add`: LAPI creates `<CN>@<client IP>`,
//!   auth type `tls`, on its first request;
//! - a client certificate from the right CA with a wrong `OU` passes the handshake and gets
//!   403; one from another CA, or none under `RequireAndVerifyClientCert`, fails the
//!   handshake. With TLS 1.3 the client's side of the handshake is over by then, so the
//!   client sees Go's `bad_certificate` alert on its first request, not when connecting:
//!   [`LapiError::Transport`], and only sometimes with the alert in its chain (else just
//!   "connection closed" or "broken pipe"); LAPI's log says why;
//! - LAPI (Go `net/http`) speaks HTTP/2 with blocker over TLS (ALPN `h2`).

use std::fmt::Write as _;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use blocker::decisions::StreamBatch;
use blocker::lapi::{ApiKey, LapiAuth, LapiClient, LapiError, LapiSettings};
use blocker_tests::lapi::Lapi;
use blocker_tests::privileged;
use blocker_tests::tls::{Ca, CertKey, Pki};
use serde_json::Value;

const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
/// The `OU` LAPI is told to admit bouncers by (the value `CrowdSec`'s docs use).
const BOUNCER_OU: &str = "bouncer-ou";
/// LAPI's `client_verification` values (Go's `tls.ClientAuthType` names).
const IF_GIVEN: &str = "VerifyClientCertIfGiven";
const REQUIRED: &str = "RequireAndVerifyClientCert";
const BANNED: &str = "203.0.113.7";

/// A CA, LAPI's server certificate for 127.0.0.1 and a bouncer certificate
/// (`OU=bouncer-ou`, `CN=blocker-mail`), all from that CA.
struct Certs {
    pki: Pki,
    ca: Ca,
    server: CertKey,
    bouncer: CertKey,
}

impl Certs {
    fn new() -> Self {
        let pki = Pki::new();
        let ca = pki.ca("ca");
        let server = pki.server_cert(&ca, "server", LOOPBACK);
        let bouncer = pki.client_cert(&ca, "bouncer", &bouncer_subject(BOUNCER_OU));
        Self {
            pki,
            ca,
            server,
            bouncer,
        }
    }

    /// The body of LAPI's `api.server.tls`: our server certificate, client certificates
    /// checked against our CA as `client_verification` says, bouncers admitted by `OU`
    /// (the key is left out when `allowed_ou` is empty).
    fn lapi_tls_yaml(&self, client_verification: &str, allowed_ou: &[&str]) -> String {
        let mut yaml = format!(
            "cert_file: {}\nkey_file: {}\nclient_verification: {client_verification}\n\
             ca_cert_path: {}\n",
            self.server.cert.display(),
            self.server.key.display(),
            self.ca.cert.display(),
        );
        if !allowed_ou.is_empty() {
            yaml.push_str("bouncers_allowed_ou:\n");
            for ou in allowed_ou {
                writeln!(yaml, "  - {ou}").expect("write to a String");
            }
        }
        yaml
    }

    /// LAPI on HTTPS, admitting `OU=bouncer-ou` certificates if given, with a
    /// `cscli decisions add --ip 203.0.113.7` already made.
    fn lapi_with_a_ban(&self) -> Lapi {
        let lapi = Lapi::start_tls(&self.lapi_tls_yaml(IF_GIVEN, &[BOUNCER_OU]));
        lapi.add_decision_ip(BANNED, "4h", "ban");
        lapi
    }
}

fn bouncer_subject(ou: &str) -> String {
    format!("/O=blocker-tests/OU={ou}/CN=blocker-mail")
}

fn cert_auth(cert: &CertKey) -> LapiAuth {
    LapiAuth::Tls {
        cert_path: cert.cert.clone(),
        key_path: cert.key.clone(),
    }
}

fn key_auth(key: &str) -> LapiAuth {
    LapiAuth::ApiKey(ApiKey::new(key.to_owned()))
}

/// A client of `lapi` (its `https://` URL) trusting `ca` on top of webpki's roots.
fn client(lapi: &Lapi, auth: LapiAuth, ca: Option<&Path>) -> LapiClient {
    client_with(lapi, auth, ca, false)
}

fn client_with(lapi: &Lapi, auth: LapiAuth, ca: Option<&Path>, insecure: bool) -> LapiClient {
    let mut settings = LapiSettings::new(lapi.url().parse().expect("LAPI url"), auth);
    settings.ca_cert_path = ca.map(Path::to_owned);
    settings.insecure_skip_verify = insecure;
    LapiClient::new(&settings).expect("LAPI client")
}

fn block_on<F: Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
        .block_on(future)
}

/// `HEAD`, then a `startup=true` pull, as the daemon starts.
fn check_and_pull(client: &LapiClient) -> Result<StreamBatch, LapiError> {
    block_on(async {
        client.check().await?;
        client.stream(true, SystemTime::now).await
    })
}

fn has(batch: &StreamBatch, ip: &str) -> bool {
    let net = format!("{ip}/32");
    batch.new.iter().any(|d| d.net.to_string() == net)
}

/// The error and its sources, `: `-separated, as the daemon logs them.
fn chain(err: &LapiError) -> String {
    blocker::error_chain(err)
}

/// Asserts `err` is a 403 `Unauthorized` for `credential`; returns its chain.
fn assert_forbidden(err: &LapiError, credential: &str) -> String {
    let text = chain(err);
    let LapiError::Unauthorized {
        credential: refused,
        status,
        ..
    } = err
    else {
        panic!("want Unauthorized, got {err:?}: {text}");
    };
    assert_eq!((*refused, status.as_u16()), (credential, 403), "{text}");
    text
}

/// Asserts `err` is the first request failing on a connection whose handshake LAPI ended
/// with a `bad_certificate` alert (see the module doc); returns its chain. What the chain
/// ends with is a race between hyper's HTTP/2 connection task and the queued request:
/// `received fatal alert: BadCertificate` (about 1 run in 3), `operation was canceled:
/// connection closed` (most runs) or `stream closed because of a broken pipe` (rarely).
fn assert_bad_certificate_alert(err: &LapiError) -> String {
    let text = chain(err);
    assert!(
        matches!(err, LapiError::Transport { .. }),
        "{err:?}: {text}"
    );
    assert!(text.contains(": error sending request: "), "{text}");
    text
}

/// Waits up to 5 s for LAPI's logs to mention `needle` (Go logs a handshake failure after
/// sending the alert, so the client may see it first).
fn assert_lapi_logged(lapi: &Lapi, needle: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let logs = lapi.log_tail(200);
        if logs.contains(needle) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "LAPI never logged {needle:?}:\n{logs}"
        );
        thread::sleep(Duration::from_millis(20));
    }
}

/// `cscli bouncers list -o json` as `(name, auth_type)` pairs.
fn bouncers(lapi: &Lapi) -> Vec<(String, String)> {
    let json: Value =
        serde_json::from_str(&lapi.cscli(&["bouncers", "list", "-o", "json"])).expect("JSON");
    json.as_array()
        .map(|list| {
            list.iter()
                .map(|b| {
                    let field = |k: &str| b[k].as_str().unwrap_or_default().to_owned();
                    (field("name"), field("auth_type"))
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn client_certificate_pulls_cscli_decisions() {
    if !privileged("client_certificate_pulls_cscli_decisions") {
        return;
    }
    let certs = Certs::new();
    let lapi = certs.lapi_with_a_ban();

    let client = client(&lapi, cert_auth(&certs.bouncer), Some(&certs.ca.cert));
    let batch = check_and_pull(&client).expect("HEAD and startup pull with a client certificate");
    assert!(has(&batch, BANNED), "{:?}", batch.new);
    let registered = bouncers(&lapi);
    assert_eq!(
        registered,
        [("blocker-mail@127.0.0.1".to_owned(), "tls".to_owned())],
        "LAPI registers a certificate bouncer itself, as <CN>@<IP>"
    );
    lapi.add_decision_ip("203.0.113.8", "4h", "ban");
    let delta = block_on(client.stream(false, SystemTime::now)).expect("delta pull");
    assert!(has(&delta, "203.0.113.8"), "{:?}", delta.new);
    eprintln!(
        "client cert OU={BOUNCER_OU} + ca_cert_path: HEAD 200, startup pull has {BANNED}, \
         delta has 203.0.113.8, cscli bouncers list: {registered:?}"
    );
}

#[test]
fn server_certificate_must_be_trusted_or_verification_skipped() {
    if !privileged("server_certificate_must_be_trusted_or_verification_skipped") {
        return;
    }
    let certs = Certs::new();
    let lapi = certs.lapi_with_a_ban();

    let err = check_and_pull(&client(&lapi, cert_auth(&certs.bouncer), None))
        .expect_err("our CA is not among webpki's roots");
    let text = chain(&err);
    assert!(
        matches!(err, LapiError::Unreachable { .. }),
        "{err:?}: {text}"
    );
    assert!(
        text.ends_with("invalid peer certificate: UnknownIssuer"),
        "{text}"
    );
    eprintln!("no ca_cert_path: Unreachable: {text}");

    let insecure = client_with(&lapi, cert_auth(&certs.bouncer), None, true);
    let batch = check_and_pull(&insecure).expect("pull with insecure_skip_verify");
    assert!(has(&batch, BANNED), "{:?}", batch.new);
    eprintln!("no ca_cert_path, insecure_skip_verify: HEAD 200, startup pull has {BANNED}");
}

#[test]
fn wrong_client_certificates_are_refused() {
    if !privileged("wrong_client_certificates_are_refused") {
        return;
    }
    let certs = Certs::new();
    let lapi = certs.lapi_with_a_ban();

    let wrong_ou = certs
        .pki
        .client_cert(&certs.ca, "wrong-ou", &bouncer_subject("agent-ou"));
    let err = check_and_pull(&client(&lapi, cert_auth(&wrong_ou), Some(&certs.ca.cert)))
        .expect_err("OU=agent-ou is not a bouncer OU");
    let text = assert_forbidden(&err, "tls client certificate");
    assert_lapi_logged(
        &lapi,
        "client certificate OU ([agent-ou]) doesn't match expected OU ([bouncer-ou])",
    );
    eprintln!("client cert OU=agent-ou: Unauthorized: {text}");

    let other_ca = certs.pki.ca("other-ca");
    let foreign = certs
        .pki
        .client_cert(&other_ca, "foreign", &bouncer_subject(BOUNCER_OU));
    let err = check_and_pull(&client(&lapi, cert_auth(&foreign), Some(&certs.ca.cert)))
        .expect_err("a client certificate from another CA");
    let text = assert_bad_certificate_alert(&err);
    assert_lapi_logged(
        &lapi,
        "tls: failed to verify client certificate: x509: certificate signed by unknown authority",
    );
    eprintln!("client cert OU={BOUNCER_OU} from another CA: Transport: {text}");

    assert_eq!(bouncers(&lapi), [], "no bouncer was registered");
}

#[test]
fn bouncer_certificates_need_bouncers_allowed_ou() {
    if !privileged("bouncer_certificates_need_bouncers_allowed_ou") {
        return;
    }
    let certs = Certs::new();
    let lapi = Lapi::start_tls(&certs.lapi_tls_yaml(IF_GIVEN, &[]));

    let err = check_and_pull(&client(
        &lapi,
        cert_auth(&certs.bouncer),
        Some(&certs.ca.cert),
    ))
    .expect_err("LAPI 1.4.6 admits no OU by default");
    let text = assert_forbidden(&err, "tls client certificate");
    assert_lapi_logged(
        &lapi,
        "client certificate OU ([bouncer-ou]) doesn't match expected OU ([])",
    );
    eprintln!(
        "no bouncers_allowed_ou in LAPI's config, cert OU={BOUNCER_OU}: Unauthorized: {text}"
    );
}

#[test]
fn api_key_over_https() {
    if !privileged("api_key_over_https") {
        return;
    }
    let certs = Certs::new();
    let lapi = certs.lapi_with_a_ban();
    let key = lapi.add_bouncer("mail-key");

    let batch = check_and_pull(&client(&lapi, key_auth(&key), Some(&certs.ca.cert)))
        .expect("HEAD and startup pull with an API key over https");
    assert!(has(&batch, BANNED), "{:?}", batch.new);
    eprintln!(
        "api key over https + ca_cert_path ({IF_GIVEN}): HEAD 200, startup pull has {BANNED}"
    );

    let err = check_and_pull(&client(&lapi, key_auth("not-a-key"), Some(&certs.ca.cert)))
        .expect_err("an unknown API key");
    let text = assert_forbidden(&err, "api key");
    eprintln!("unknown api key over https: Unauthorized: {text}");
}

#[test]
fn required_client_certificate_shuts_out_api_keys() {
    if !privileged("required_client_certificate_shuts_out_api_keys") {
        return;
    }
    let certs = Certs::new();
    let lapi = Lapi::start_tls(&certs.lapi_tls_yaml(REQUIRED, &[BOUNCER_OU]));
    let key = lapi.add_bouncer("mail-key");

    check_and_pull(&client(
        &lapi,
        cert_auth(&certs.bouncer),
        Some(&certs.ca.cert),
    ))
    .expect("a client certificate under RequireAndVerifyClientCert");
    eprintln!("{REQUIRED}, client cert: HEAD 200, startup pull ok");

    let err = check_and_pull(&client(&lapi, key_auth(&key), Some(&certs.ca.cert)))
        .expect_err("an API key without a client certificate");
    let text = assert_bad_certificate_alert(&err);
    assert_lapi_logged(&lapi, "tls: client didn't provide a certificate");
    eprintln!("{REQUIRED}, valid api key, no cert: Transport: {text}");
}
