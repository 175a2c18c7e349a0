//! A throwaway PostgreSQL for tests: `initdb` and `pg_ctl` into a temporary
//! directory (as the `postgres` user when the tests run as root, since initdb
//! refuses root), listening on a free loopback port, stopped on drop. With
//! `WRIT_TEST_DATABASE_URL` set, that server is used instead (and never
//! stopped); every [`Cluster::database`] is a new, empty database on it.
//!
//! Shared by the store's contract tests and the mesh tests (`#[path]`).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

pub struct Cluster {
    /// `postgres://user@host:port` without a database.
    base: String,
    own: Option<Own>,
}

struct Own {
    _dir: tempfile::TempDir,
    data: PathBuf,
    bin: PathBuf,
    port: u16,
    as_postgres: bool,
    /// More `-c` settings (TLS).
    extra: String,
}

static DATABASES: AtomicU32 = AtomicU32::new(0);

fn bindir() -> PathBuf {
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
        if out.status.success() {
            let p = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
            if p.join("initdb").exists() {
                return p;
            }
        }
    }
    for p in ["/usr/local/bin", "/usr/lib/postgresql/15/bin", "/usr/bin"] {
        if Path::new(p).join("initdb").exists() {
            return PathBuf::from(p);
        }
    }
    panic!("PostgreSQL's initdb is not installed (looked at pg_config --bindir, /usr/local/bin, /usr/lib/postgresql/15/bin); install PostgreSQL or set WRIT_TEST_DATABASE_URL");
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl Own {
    fn run(&self, tool: &str, args: &[&str]) -> std::process::Output {
        let exe = self.bin.join(tool);
        let mut cmd = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&exe);
            c
        } else {
            Command::new(&exe)
        };
        cmd.args(args)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {tool}: {e}"))
    }

    fn pg_ctl(&self, args: &[&str]) -> std::process::Output {
        let data = self.data.to_string_lossy().into_owned();
        let mut all = vec!["-D", data.as_str()];
        all.extend_from_slice(args);
        self.run("pg_ctl", &all)
    }
}

impl Cluster {
    /// Start a new cluster (or use `WRIT_TEST_DATABASE_URL`).
    pub fn start() -> Cluster {
        Cluster::start_with(None)
    }

    /// Start a new cluster that speaks TLS (`ssl=on`) with this certificate
    /// and key (PEM); never `WRIT_TEST_DATABASE_URL`'s.
    pub fn start_tls(cert: &Path, key: &Path) -> Cluster {
        Cluster::start_with(Some((cert, key)))
    }

    fn start_with(tls: Option<(&Path, &Path)>) -> Cluster {
        if let (Ok(url), None) = (std::env::var("WRIT_TEST_DATABASE_URL"), tls) {
            let base = match url.rfind('/') {
                Some(i) if i > "postgres://".len() => url[..i].to_owned(),
                _ => url,
            };
            return Cluster { base, own: None };
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let as_postgres = is_root();
        let data = dir.path().join("data");
        if as_postgres {
            let ok = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .status()
                .expect("chown")
                .success();
            assert!(ok, "cannot give the cluster directory to the postgres user");
        }
        let extra = match tls {
            None => String::new(),
            Some(_) => " -c ssl=on -c ssl_cert_file=server.crt -c ssl_key_file=server.key".into(),
        };
        let own = Own {
            data,
            bin: bindir(),
            port: free_port(),
            as_postgres,
            extra,
            _dir: dir,
        };
        let data = own.data.to_string_lossy().into_owned();
        let out = own.run(
            "initdb",
            &[
                "-D",
                &data,
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
                "-E",
                "UTF8",
            ],
        );
        assert!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        if let Some((cert, key)) = tls {
            // The server reads them from its data dir; the key must be its
            // owner's alone.
            for (from, to) in [(cert, "server.crt"), (key, "server.key")] {
                let dest = own.data.join(to);
                std::fs::copy(from, &dest).unwrap();
                std::fs::set_permissions(
                    &dest,
                    std::os::unix::fs::PermissionsExt::from_mode(0o600),
                )
                .unwrap();
                if as_postgres {
                    let ok = Command::new("chown")
                        .arg("postgres:postgres")
                        .arg(&dest)
                        .status()
                        .unwrap()
                        .success();
                    assert!(ok, "cannot give {to} to the postgres user");
                }
            }
        }
        let c = Cluster {
            base: format!("postgres://postgres@127.0.0.1:{}", own.port),
            own: Some(own),
        };
        c.start_server();
        c
    }

    fn start_server(&self) {
        let Some(own) = &self.own else {
            panic!("a cluster from WRIT_TEST_DATABASE_URL cannot be started here")
        };
        let opts = format!(
            "-p {} -c listen_addresses=127.0.0.1 -k {} -c max_connections=200{}",
            own.port,
            own.data.display(),
            own.extra
        );
        let log = own.data.join("server.log").to_string_lossy().into_owned();
        let out = own.pg_ctl(&["-l", &log, "-o", &opts, "-w", "-t", "60", "start"]);
        assert!(
            out.status.success(),
            "pg_ctl start failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            std::fs::read_to_string(own.data.join("server.log")).unwrap_or_default()
        );
    }

    /// `postgres://postgres@127.0.0.1:PORT` (no database).
    pub fn base(&self) -> &str {
        &self.base
    }

    /// A URL to a new, empty database.
    pub fn database(&self) -> String {
        let name = format!(
            "writ_{}_{}",
            std::process::id(),
            DATABASES.fetch_add(1, Ordering::Relaxed)
        );
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let admin = format!("{}/postgres", self.base);
        rt.block_on(async {
            let (client, conn) = tokio_postgres::connect(&admin, tokio_postgres::NoTls)
                .await
                .unwrap_or_else(|e| panic!("cannot connect to {admin}: {e}"));
            tokio::spawn(conn);
            client
                .batch_execute(&format!("CREATE DATABASE {name}"))
                .await
                .expect("create database");
        });
        format!("{}/{name}", self.base)
    }

    /// Stop the server (fast shutdown: clients are disconnected).
    pub fn stop(&self) {
        if let Some(own) = &self.own {
            let out = own.pg_ctl(&["-m", "fast", "-w", "stop"]);
            assert!(
                out.status.success(),
                "pg_ctl stop failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }

    /// Start it again after [`Cluster::stop`].
    pub fn restart(&self) {
        self.start_server();
    }

    /// Whether this cluster can be stopped and started by the tests.
    pub fn owned(&self) -> bool {
        self.own.is_some()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Some(own) = &self.own {
            let _ = own.pg_ctl(&["-m", "immediate", "-w", "stop"]);
        }
    }
}
