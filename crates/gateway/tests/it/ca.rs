//! An OpenSSL CA in a temporary directory (`ca.key`, `ca.pem`) that signs the CSRs of the
//! certificate-request and renewal tests (SPEC 4.6).

use std::path::PathBuf;

use mtls_test_support::{openssl, temp_dir};

pub(crate) struct Ca {
    pub(crate) dir: PathBuf,
}

impl Ca {
    /// A P-256 CA named `CN=<name>`, valid 30 days; `None` without OpenSSL.
    pub(crate) fn new(name: &str) -> Option<Ca> {
        let dir = temp_dir("test-ca");
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
                "30",
                "-subj",
                &format!("/CN={name}"),
                "-addext",
                "basicConstraints=critical,CA:true",
                "-addext",
                "keyUsage=critical,keyCertSign",
            ],
        )?;
        Some(Ca { dir })
    }

    pub(crate) fn pem(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    pub(crate) fn key(&self) -> PathBuf {
        self.dir.join("ca.key")
    }

    /// Signs `csr` (PEM) with `openssl x509 -req`, valid 30 days, with `extensions` (an
    /// extfile's lines); answers the leaf's PEM.
    pub(crate) fn sign(&self, csr: &str, extensions: &str) -> String {
        let work = temp_dir("ca-sign");
        std::fs::write(work.join("r.csr"), csr).unwrap();
        std::fs::write(work.join("ext"), extensions).unwrap();
        let ca = self.pem();
        let key = self.key();
        openssl(
            &work,
            &[
                "x509",
                "-req",
                "-in",
                "r.csr",
                "-CA",
                ca.to_str().unwrap(),
                "-CAkey",
                key.to_str().unwrap(),
                "-CAcreateserial",
                "-CAserial",
                work.join("ca.srl").to_str().unwrap(),
                "-out",
                "leaf.pem",
                "-days",
                "30",
                "-extfile",
                "ext",
            ],
        )
        .unwrap();
        std::fs::read_to_string(work.join("leaf.pem")).unwrap()
    }

    /// The leaf followed by this CA.
    pub(crate) fn chain(&self, leaf: &str) -> String {
        format!("{leaf}{}", std::fs::read_to_string(self.pem()).unwrap())
    }
}
