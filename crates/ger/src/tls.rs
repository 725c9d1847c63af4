//! The server's credentials: a CA, a serving certificate signed by it, and the admin token,
//! made on first start in the data directory and reused afterwards.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    #[error("writing {0}: {1}")]
    Write(PathBuf, std::io::Error),
    #[error("reading {0}: {1}")]
    Read(PathBuf, String),
    #[error("generating certificates: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("configuring TLS: {0}")]
    Tls(#[from] rustls::Error),
}

pub struct Credentials {
    pub ca_pem: String,
    pub token: String,
    pub tls: Arc<rustls::ServerConfig>,
}

fn write(path: &Path, data: &str) -> Result<(), CredentialsError> {
    std::fs::write(path, data).map_err(|e| CredentialsError::Write(path.to_path_buf(), e))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
    }
    Ok(())
}

fn read(path: &Path) -> Result<String, CredentialsError> {
    std::fs::read_to_string(path)
        .map_err(|e| CredentialsError::Read(path.to_path_buf(), e.to_string()))
}

fn generate(dir: &Path, hosts: &[String]) -> Result<(), CredentialsError> {
    let ca_key = KeyPair::generate()?;
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, "ger-ca");
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca, &ca_key);
    let server_key = KeyPair::generate()?;
    let mut names = vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
    ];
    for h in hosts {
        if !names.contains(h) {
            names.push(h.clone());
        }
    }
    let mut server = CertificateParams::new(names)?;
    server
        .distinguished_name
        .push(DnType::CommonName, "ger-apiserver");
    let server_cert = server.signed_by(&server_key, &issuer)?;
    write(&dir.join("ca.crt"), &ca_cert.pem())?;
    write(&dir.join("ca.key"), &ca_key.serialize_pem())?;
    write(&dir.join("server.crt"), &server_cert.pem())?;
    write(&dir.join("server.key"), &server_key.serialize_pem())?;
    let token: String = (0..32)
        .map(|_| format!("{:x}", rand::random_range(0..16u8)))
        .collect();
    write(&dir.join("token"), &token)?;
    Ok(())
}

/// Load the credentials in `dir`, making them first if there are none.
pub fn load_or_create(dir: &Path, hosts: &[String]) -> Result<Credentials, CredentialsError> {
    let pki = dir.join("pki");
    std::fs::create_dir_all(&pki).map_err(|e| CredentialsError::Write(pki.clone(), e))?;
    if !pki.join("token").exists() {
        generate(&pki, hosts)?;
    }
    let ca_pem = read(&pki.join("ca.crt"))?;
    let token = read(&pki.join("token"))?.trim().to_string();
    let cert_path = pki.join("server.crt");
    let key_path = pki.join("server.key");
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert_path)
        .map_err(|e| CredentialsError::Read(cert_path.clone(), e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| CredentialsError::Read(cert_path.clone(), e.to_string()))?;
    let key = PrivateKeyDer::from_pem_file(&key_path)
        .map_err(|e| CredentialsError::Read(key_path.clone(), e.to_string()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Credentials {
        ca_pem,
        token,
        tls: Arc::new(tls),
    })
}

/// A kubeconfig for the admin user of the server at `server` (an https URL).
pub fn kubeconfig(server: &str, ca_pem: &str, token: &str) -> String {
    kubeconfig_for(server, ca_pem, "ger-admin", token)
}

/// A kubeconfig for `user`, who holds `token`, on the server at `server`.
pub fn kubeconfig_for(server: &str, ca_pem: &str, user: &str, token: &str) -> String {
    use base64::Engine;
    let ca = base64::engine::general_purpose::STANDARD.encode(ca_pem);
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: ger
  cluster:
    server: {server}
    certificate-authority-data: {ca}
users:
- name: {user}
  user:
    token: {token}
contexts:
- name: ger
  context:
    cluster: ger
    user: {user}
    namespace: default
current-context: ger
"
    )
}
