//! The cluster's certificates and keys, generated fresh for each cluster (as kubeadm does): a CA; the API server's
//! serving certificate; client certificates for the admin, the controller manager, the scheduler, kube-proxy, the node
//! agent and the API server's kubelet client; the node agent's serving certificate; a front-proxy CA and client for
//! aggregated APIs (KEDA's metrics adapter); and the service-account key pair. Files are PEM, keys mode 0600.

use std::fs;
use std::io;
use std::net::Ipv4Addr;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

use crate::config::{CLUSTER_DOMAIN, Cluster};

/// How long the certificates are valid (kubeadm's default for leaf certificates).
pub const VALIDITY: Duration = Duration::from_secs(365 * 24 * 3600);

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("generating {what}: {source}")]
    Generate { what: String, source: rcgen::Error },
    #[error("writing {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
}

/// A certificate and its key, as files.
#[derive(Debug, Clone)]
pub struct Pair {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Every file the cluster's components are given.
#[derive(Debug, Clone)]
pub struct Pki {
    pub dir: PathBuf,
    pub ca: Pair,
    pub apiserver: Pair,
    pub apiserver_kubelet_client: Pair,
    pub admin: Pair,
    pub controller_manager: Pair,
    pub scheduler: Pair,
    pub proxy: Pair,
    pub node: Pair,
    pub kubelet_serving: Pair,
    pub front_proxy_ca: Pair,
    pub front_proxy_client: Pair,
    /// The service-account signing key (private) and its public half.
    pub service_account_key: PathBuf,
    pub service_account_pub: PathBuf,
}

/// Who a certificate is for.
struct Subject<'a> {
    file: &'a str,
    common_name: String,
    organization: Option<&'a str>,
    usage: ExtendedKeyUsagePurpose,
    names: Vec<String>,
}

impl Pki {
    /// Generates everything into `cluster.pki_dir()`, replacing what was there.
    pub fn generate(cluster: &Cluster) -> Result<Pki, PkiError> {
        let dir = cluster.pki_dir();
        node_agent::host::remove_path(&dir).map_err(|source| PkiError::Write {
            path: dir.clone(),
            source,
        })?;
        fs::create_dir_all(&dir).map_err(|source| PkiError::Write {
            path: dir.clone(),
            source,
        })?;
        let (ca, ca_files) = authority(&dir, "ca", "autoscaling-lab-ca")?;
        let (front_proxy, front_proxy_files) =
            authority(&dir, "front-proxy-ca", "autoscaling-lab-front-proxy-ca")?;
        let host = cluster.host_ip().to_string();
        let node = cluster.node_name();
        let client = ExtendedKeyUsagePurpose::ClientAuth;
        let server = ExtendedKeyUsagePurpose::ServerAuth;
        let issue = |issuer: &CertifiedIssuer<'_, KeyPair>, s: Subject<'_>| leaf(&dir, issuer, s);
        let mut apiserver_names: Vec<String> = [
            "kubernetes",
            "kubernetes.default",
            "kubernetes.default.svc",
            "localhost",
        ]
        .map(String::from)
        .into();
        apiserver_names.push(format!("kubernetes.default.svc.{CLUSTER_DOMAIN}"));
        apiserver_names.extend([
            Ipv4Addr::LOCALHOST.to_string(),
            cluster.kubernetes_service_ip().to_string(),
            host.clone(),
        ]);
        let pki = Pki {
            apiserver: issue(
                &ca,
                Subject {
                    file: "apiserver",
                    common_name: "kube-apiserver".into(),
                    organization: None,
                    usage: server.clone(),
                    names: apiserver_names,
                },
            )?,
            apiserver_kubelet_client: issue(
                &ca,
                Subject {
                    file: "apiserver-kubelet-client",
                    common_name: "kube-apiserver-kubelet-client".into(),
                    organization: Some("system:masters"),
                    usage: client.clone(),
                    names: vec![],
                },
            )?,
            admin: issue(
                &ca,
                Subject {
                    file: "admin",
                    common_name: "kubernetes-admin".into(),
                    organization: Some("system:masters"),
                    usage: client.clone(),
                    names: vec![],
                },
            )?,
            controller_manager: issue(
                &ca,
                Subject {
                    file: "controller-manager",
                    common_name: "system:kube-controller-manager".into(),
                    organization: None,
                    usage: client.clone(),
                    names: vec![],
                },
            )?,
            scheduler: issue(
                &ca,
                Subject {
                    file: "scheduler",
                    common_name: "system:kube-scheduler".into(),
                    organization: None,
                    usage: client.clone(),
                    names: vec![],
                },
            )?,
            proxy: issue(
                &ca,
                Subject {
                    file: "kube-proxy",
                    common_name: "system:kube-proxy".into(),
                    organization: None,
                    usage: client.clone(),
                    names: vec![],
                },
            )?,
            node: issue(
                &ca,
                Subject {
                    file: "node",
                    common_name: format!("system:node:{node}"),
                    organization: Some("system:nodes"),
                    usage: client.clone(),
                    names: vec![],
                },
            )?,
            kubelet_serving: issue(
                &ca,
                Subject {
                    file: "kubelet-serving",
                    common_name: format!("system:node:{node}"),
                    organization: Some("system:nodes"),
                    usage: server,
                    names: vec![node.clone(), host.clone()],
                },
            )?,
            front_proxy_client: issue(
                &front_proxy,
                Subject {
                    file: "front-proxy-client",
                    common_name: "front-proxy-client".into(),
                    organization: None,
                    usage: client,
                    names: vec![],
                },
            )?,
            service_account_key: dir.join("sa.key"),
            service_account_pub: dir.join("sa.pub"),
            ca: ca_files,
            front_proxy_ca: front_proxy_files,
            dir: dir.clone(),
        };
        let sa = KeyPair::generate().map_err(|source| PkiError::Generate {
            what: "the service-account key".into(),
            source,
        })?;
        write_secret(&pki.service_account_key, &sa.serialize_pem())?;
        write_public(&pki.service_account_pub, &sa.public_key_pem())?;
        Ok(pki)
    }
}

fn validity(params: &mut CertificateParams) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    // A day back, so that a clock a little behind on another process still accepts it.
    let (y, m, d) = civil_date(now.saturating_sub(Duration::from_secs(86_400)));
    params.not_before = rcgen::date_time_ymd(y, m, d);
    let (y, m, d) = civil_date(now + VALIDITY);
    params.not_after = rcgen::date_time_ymd(y, m, d);
}

/// The calendar date (UTC) of a time since the epoch (Howard Hinnant's days-to-civil).
fn civil_date(since_epoch: Duration) -> (i32, u8, u8) {
    let days = (since_epoch.as_secs() / 86_400) as i64 + 719_468;
    let era = days.div_euclid(146_097);
    let day_of_era = days.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * mp + 2) / 5 + 1) as u8;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u8;
    let year = (year_of_era + era * 400 + i64::from(month <= 2)) as i32;
    (year, month, day)
}

fn authority(
    dir: &Path,
    file: &str,
    name: &str,
) -> Result<(CertifiedIssuer<'static, KeyPair>, Pair), PkiError> {
    let generate = |source| PkiError::Generate {
        what: file.to_string(),
        source,
    };
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(generate)?;
    params.distinguished_name.remove(DnType::CommonName);
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    validity(&mut params);
    // A CA outlives its leaves (kubeadm: 10 years); one generated per cluster needs no more than the leaves plus a day.
    let key = KeyPair::generate().map_err(generate)?;
    let key_pem = key.serialize_pem();
    let issuer = CertifiedIssuer::self_signed(params, key).map_err(generate)?;
    let pair = Pair {
        cert: dir.join(format!("{file}.crt")),
        key: dir.join(format!("{file}.key")),
    };
    write_public(&pair.cert, &issuer.pem())?;
    write_secret(&pair.key, &key_pem)?;
    Ok((issuer, pair))
}

fn leaf(
    dir: &Path,
    issuer: &CertifiedIssuer<'_, KeyPair>,
    subject: Subject<'_>,
) -> Result<Pair, PkiError> {
    let generate = |source| PkiError::Generate {
        what: subject.file.to_string(),
        source,
    };
    let mut params = CertificateParams::new(subject.names.clone()).map_err(generate)?;
    params.distinguished_name.remove(DnType::CommonName);
    params
        .distinguished_name
        .push(DnType::CommonName, subject.common_name.clone());
    if let Some(org) = subject.organization {
        params
            .distinguished_name
            .push(DnType::OrganizationName, org);
    }
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![subject.usage.clone()];
    params.use_authority_key_identifier_extension = true;
    validity(&mut params);
    let key = KeyPair::generate().map_err(generate)?;
    let cert = params.signed_by(&key, issuer).map_err(generate)?;
    let pair = Pair {
        cert: dir.join(format!("{}.crt", subject.file)),
        key: dir.join(format!("{}.key", subject.file)),
    };
    write_public(&pair.cert, &cert.pem())?;
    write_secret(&pair.key, &key.serialize_pem())?;
    Ok(pair)
}

fn write_public(path: &Path, pem: &str) -> Result<(), PkiError> {
    write_mode(path, pem, 0o644)
}

fn write_secret(path: &Path, pem: &str) -> Result<(), PkiError> {
    write_mode(path, pem, 0o600)
}

fn write_mode(path: &Path, content: &str, mode: u32) -> Result<(), PkiError> {
    let err = |source| PkiError::Write {
        path: path.to_path_buf(),
        source,
    };
    fs::write(path, content).map_err(err)?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(civil_date(Duration::ZERO), (1970, 1, 1));
        assert_eq!(civil_date(Duration::from_secs(951_782_400)), (2000, 2, 29));
        assert_eq!(
            civil_date(Duration::from_secs(1_796_601_600)),
            (2026, 12, 7)
        );
    }
}
