//! The admin kubeconfig as the Kubeconfig RPC delivers it: a `.tar.gz` holding one regular
//! file named `kubeconfig`, split across `common.Data` chunks.

use std::io::Read;

use flate2::read::GzDecoder;
use kforge_secret::{SecretBytes, SecretString};

use crate::Error;

/// Upper bound on the unpacked kubeconfig; real ones are a few kB.
const MAX_KUBECONFIG_BYTES: u64 = 16 * 1024 * 1024;

/// Unpacks the `kubeconfig` file from the reassembled archive bytes of `node`.
pub fn extract_kubeconfig(node: &str, archive: &SecretBytes) -> Result<SecretString, Error> {
    let fail = |reason: String, source: Option<std::io::Error>| Error::KubeconfigArchive {
        node: node.to_string(),
        reason,
        source,
    };
    if archive.expose().is_empty() {
        return Err(fail("the node sent no data".into(), None));
    }
    let mut tar = tar::Archive::new(GzDecoder::new(archive.expose().as_slice()));
    let entries = tar
        .entries()
        .map_err(|e| fail("it is not a gzip-compressed tar archive".into(), Some(e)))?;
    let mut seen = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| fail("reading the tar.gz archive failed".into(), Some(e)))?;
        let path = entry
            .path()
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_else(|_| "<unreadable name>".into());
        let name = path.trim_start_matches("./");
        if name != "kubeconfig" || !entry.header().entry_type().is_file() {
            seen.push(path);
            continue;
        }
        let mut contents = SecretBytes::new(Vec::new());
        entry
            .take(MAX_KUBECONFIG_BYTES + 1)
            .read_to_end(contents.expose_mut())
            .map_err(|e| {
                fail(
                    "reading `kubeconfig` from the archive failed".into(),
                    Some(e),
                )
            })?;
        if contents.expose().len() as u64 > MAX_KUBECONFIG_BYTES {
            return Err(fail(
                format!("`kubeconfig` is larger than {MAX_KUBECONFIG_BYTES} bytes"),
                None,
            ));
        }
        let bytes = std::mem::take(contents.expose_mut());
        return match String::from_utf8(bytes) {
            Ok(text) => Ok(SecretString::new(text)),
            Err(e) => {
                // Zero the rejected bytes too.
                drop(SecretBytes::new(e.into_bytes()));
                Err(fail("`kubeconfig` is not UTF-8 text".into(), None))
            }
        };
    }
    let found = if seen.is_empty() {
        "the archive is empty".to_string()
    } else {
        format!("it holds only: {}", seen.join(", "))
    };
    Err(fail(
        format!("no regular file named `kubeconfig` in the archive; {found}"),
        None,
    ))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use flate2::Compression;
    use flate2::write::GzEncoder;

    pub(crate) fn tar_gz(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut builder = tar::Builder::new(GzEncoder::new(Vec::new(), Compression::default()));
        for (name, data) in files {
            let mut header = tar::Header::new_gnu();
            header.set_size(data.len() as u64);
            header.set_mode(0o600);
            header.set_cksum();
            builder.append_data(&mut header, name, *data).unwrap();
        }
        builder.into_inner().unwrap().finish().unwrap()
    }

    #[test]
    fn finds_the_kubeconfig_file() {
        let archive = tar_gz(&[("README", b"x"), ("kubeconfig", b"apiVersion: v1\n")]);
        let got = extract_kubeconfig("n1", &SecretBytes::new(archive)).unwrap();
        assert_eq!(got.expose(), "apiVersion: v1\n");
    }

    fn err(archive: Vec<u8>) -> String {
        match extract_kubeconfig("n1", &SecretBytes::new(archive)) {
            Ok(_) => panic!("expected an error"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn explains_what_is_missing() {
        let e = err(tar_gz(&[("other", b"x")]));
        assert!(
            e.contains("node n1") && e.contains("it holds only: other"),
            "{e}"
        );
        let e = err(b"not gzip".to_vec());
        assert!(e.contains("not usable"), "{e}");
        let e = err(Vec::new());
        assert!(e.contains("no data"), "{e}");
    }
}
