//! Test certificates made by `openssl`: a CA, a server certificate for
//! 127.0.0.1 and localhost, a client certificate, each as PEM files.

use std::path::{Path, PathBuf};
use std::process::Command;

/// One certificate authority and what it issued, in `dir`.
pub struct Pki {
    pub dir: PathBuf,
    pub name: String,
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl is installed");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Pki {
    /// A new CA named `name` in `dir/name/`.
    pub fn new(dir: &Path, name: &str) -> Pki {
        let dir = dir.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        openssl(
            &dir,
            &[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-days",
                "2",
                "-subj",
                &format!("/CN={name} test CA"),
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
            ],
        );
        Pki {
            dir,
            name: name.to_owned(),
        }
    }

    pub fn ca(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// Issue `stem.pem` / `stem.key` with these extensions (`-extfile`).
    fn issue(&self, stem: &str, cn: &str, ext: &str) -> (PathBuf, PathBuf) {
        std::fs::write(self.dir.join(format!("{stem}.ext")), ext).unwrap();
        openssl(
            &self.dir,
            &[
                "req",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                &format!("{stem}.key"),
                "-out",
                &format!("{stem}.csr"),
                "-subj",
                &format!("/CN={cn}"),
            ],
        );
        openssl(
            &self.dir,
            &[
                "x509",
                "-req",
                "-in",
                &format!("{stem}.csr"),
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "2",
                "-out",
                &format!("{stem}.pem"),
                "-extfile",
                &format!("{stem}.ext"),
            ],
        );
        (
            self.dir.join(format!("{stem}.pem")),
            self.dir.join(format!("{stem}.key")),
        )
    }

    /// A server certificate for `names` (`IP:127.0.0.1,DNS:localhost`, ...).
    pub fn server(&self, stem: &str, names: &str) -> (PathBuf, PathBuf) {
        self.issue(
            stem,
            &format!("{} server", self.name),
            &format!(
                "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName={names}\n"
            ),
        )
    }

    /// A client certificate with a SPIFFE ID.
    pub fn client(&self, stem: &str) -> (PathBuf, PathBuf) {
        self.issue(
            stem,
            &format!("{} client", self.name),
            "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\nsubjectAltName=URI:spiffe://example.org/agent/planner\n",
        )
    }

    /// A client certificate for subject `CN=cn` with these subject
    /// alternative names (`URI:spiffe://...,URI:...`), or none.
    pub fn client_with(&self, stem: &str, cn: &str, san: Option<&str>) -> (PathBuf, PathBuf) {
        let mut ext =
            "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n"
                .to_owned();
        if let Some(san) = san {
            ext.push_str(&format!("subjectAltName={san}\n"));
        }
        self.issue(stem, cn, &ext)
    }
}
