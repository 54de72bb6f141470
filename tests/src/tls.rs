//! A throwaway PKI for TLS tests, made with the `openssl` CLI (no crate): certificate
//! authorities, server certificates for an IP address and client certificates with a chosen
//! subject (`CrowdSec` admits a bouncer by the `OU` of its certificate).
//!
//! Keys are ECDSA P-256 in PKCS#8 PEM, which Go (`crowdsec`) and rustls (`reqwest`) both load.
//! Every certificate is valid from now for two days and has a random 128-bit serial (LAPI
//! caches revocation checks by serial). Leaf certificates carry the extensions strict
//! verifiers want: `CA:FALSE`, a key usage, an extended key usage (`serverAuth` or
//! `clientAuth`) and, for servers, an `IP:` subject alternative name (rustls ignores the CN).

use std::fs;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use rand::Rng;
use rand::distr::Alphanumeric;

/// Validity of every certificate, from now.
const DAYS: &str = "2";

/// A folder of certificates and keys, removed on drop.
pub struct Pki {
    dir: PathBuf,
}

/// A certificate authority of a [`Pki`]: its certificate (PEM) is what peers trust.
pub struct Ca {
    pub cert: PathBuf,
    key: PathBuf,
}

/// A leaf certificate (PEM) and its private key (PKCS#8 PEM).
pub struct CertKey {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Pki {
    /// A fresh, empty folder under the system temp dir.
    #[must_use]
    pub fn new() -> Self {
        let token: String = rand::rng()
            .sample_iter(Alphanumeric)
            .take(12)
            .map(char::from)
            .collect();
        let dir = std::env::temp_dir().join(format!("blocker-pki-{}-{token}", std::process::id()));
        fs::create_dir(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        Self { dir }
    }

    #[must_use]
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A self-signed CA named `CN=<name>`; `name` also names its files, so it must be unique
    /// within this [`Pki`].
    #[must_use]
    pub fn ca(&self, name: &str) -> Ca {
        let cert = self.dir.join(format!("{name}.pem"));
        let key = self.dir.join(format!("{name}.key"));
        let csr = self.new_key_and_csr(name, &format!("/O=blocker-tests/CN={name}"));
        let ext = self.write_ext(
            name,
            "basicConstraints=critical,CA:TRUE\n\
             keyUsage=critical,keyCertSign,cRLSign\n\
             subjectKeyIdentifier=hash\n",
        );
        openssl(&[
            "x509",
            "-req",
            "-in",
            path_str(&csr),
            "-key",
            path_str(&key),
            "-days",
            DAYS,
            "-set_serial",
            &random_serial(),
            "-extfile",
            path_str(&ext),
            "-out",
            path_str(&cert),
        ]);
        Ca { cert, key }
    }

    /// A server certificate for `ip` (`subjectAltName=IP:<ip>`, `CN=<ip>`) signed by `ca`.
    #[must_use]
    pub fn server_cert(&self, ca: &Ca, name: &str, ip: IpAddr) -> CertKey {
        self.leaf(
            ca,
            name,
            &format!("/O=blocker-tests/CN={ip}"),
            &format!("extendedKeyUsage=serverAuth\nsubjectAltName=IP:{ip}\n"),
        )
    }

    /// A client certificate with `subject` (e.g. `/OU=bouncer-ou/CN=mail`) signed by `ca`.
    #[must_use]
    pub fn client_cert(&self, ca: &Ca, name: &str, subject: &str) -> CertKey {
        self.leaf(ca, name, subject, "extendedKeyUsage=clientAuth\n")
    }

    fn leaf(&self, ca: &Ca, name: &str, subject: &str, extra_ext: &str) -> CertKey {
        let cert = self.dir.join(format!("{name}.pem"));
        let key = self.dir.join(format!("{name}.key"));
        let csr = self.new_key_and_csr(name, subject);
        let ext = self.write_ext(
            name,
            &format!(
                "basicConstraints=critical,CA:FALSE\n\
                 keyUsage=critical,digitalSignature\n\
                 authorityKeyIdentifier=keyid\n\
                 {extra_ext}"
            ),
        );
        openssl(&[
            "x509",
            "-req",
            "-in",
            path_str(&csr),
            "-CA",
            path_str(&ca.cert),
            "-CAkey",
            path_str(&ca.key),
            "-days",
            DAYS,
            "-set_serial",
            &random_serial(),
            "-extfile",
            path_str(&ext),
            "-out",
            path_str(&cert),
        ]);
        CertKey { cert, key }
    }

    /// Writes `<name>.key` and returns the path of `<name>.csr`, a request for `subject`.
    fn new_key_and_csr(&self, name: &str, subject: &str) -> PathBuf {
        let key = self.dir.join(format!("{name}.key"));
        let csr = self.dir.join(format!("{name}.csr"));
        assert!(
            !key.exists(),
            "{name} already exists in {}",
            self.dir.display()
        );
        openssl(&[
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-noenc",
            "-keyout",
            path_str(&key),
            "-subj",
            subject,
            "-out",
            path_str(&csr),
        ]);
        csr
    }

    fn write_ext(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.join(format!("{name}.ext"));
        fs::write(&path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        path
    }
}

impl Default for Pki {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        if let Err(e) = fs::remove_dir_all(&self.dir) {
            eprintln!("remove PKI folder {}: {e}", self.dir.display());
        }
    }
}

/// Runs `openssl ARGS`; panics with its output if it fails.
fn openssl(args: &[&str]) {
    let output = Command::new("openssl")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run openssl (is the openssl CLI installed?): {e}"));
    assert!(
        output.status.success(),
        "openssl {args:?} failed ({})\n--- stdout\n{}\n--- stderr\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// `0x` and 32 hex digits, the top bit clear so the serial stays positive.
fn random_serial() -> String {
    let serial: u128 = rand::random::<u128>() >> 1;
    format!("0x{serial:032x}")
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("temp paths are UTF-8")
}
