use super::*;

/// A self-signed P-256 certificate (CN crius-unit-test, valid for 100 years), its key, and
/// a key of another pair; made with openssl for these tests only.
const CERT: &str = "-----BEGIN CERTIFICATE-----
MIIBizCCATGgAwIBAgIUWTgtwHEbIAopNNGESkTvEwp35r4wCgYIKoZIzj0EAwIw
GjEYMBYGA1UEAwwPY3JpdXMtdW5pdC10ZXN0MCAXDTI2MTIwMzE2NDE1NFoYDzIx
MjYxMTA5MTY0MTU0WjAaMRgwFgYDVQQDDA9jcml1cy11bml0LXRlc3QwWTATBgcq
hkjOPQIBBggqhkjOPQMBBwNCAARwCVZwtInOFlEX12mzcYh7vxzteRbGPAMkviBG
uP+VWzq9XKcZ5/uRsU7I6Oc48wuNQsOcxpclelEGP2RO3Uouo1MwUTAdBgNVHQ4E
FgQU4nec2Hwps8ebUmQVs0lfUMmyaL4wHwYDVR0jBBgwFoAU4nec2Hwps8ebUmQV
s0lfUMmyaL4wDwYDVR0TAQH/BAUwAwEB/zAKBggqhkjOPQQDAgNIADBFAiB9XLoW
ByJgH6mbjUf8CWCkVnDqFkrPJ2QhYzl4ccFhcQIhANpg2BGu2yJaWxp/LQsaqToX
5cOnRQ4lZH2d8hnUUXDQ
-----END CERTIFICATE-----\n";
const KEY: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgh2ARqyh9ycCNVOzL
96c4HAqfsq5y0/WdAVEn+/7Wi1mhRANCAARwCVZwtInOFlEX12mzcYh7vxzteRbG
PAMkviBGuP+VWzq9XKcZ5/uRsU7I6Oc48wuNQsOcxpclelEGP2RO3Uou
-----END PRIVATE KEY-----\n";
const OTHER_KEY: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgTTsn1b0k/jw2YEf+
nHAx1fHl5ksKF9X1Cb6urYE6c6ihRANCAATW0B+PlYSWCaVhaAJ5UFdoO0qBxNHd
Lh1Bc82BVsADLbBYHkorP5R9WJIfq62iFbrCGGCqwMRhCzEi1eCYPHK7
-----END PRIVATE KEY-----\n";

async fn load(cert: &str, key: &str) -> Result<TlsAcceptor, StreamingError> {
    let dir = tempfile::tempdir().unwrap();
    let (c, k) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
    std::fs::write(&c, cert).unwrap();
    std::fs::write(&k, key).unwrap();
    acceptor(&c, &k).await
}

fn message(r: Result<TlsAcceptor, StreamingError>) -> String {
    match r {
        Err(StreamingError::Tls { path, message }) => format!("{}: {message}", path.display()),
        Err(e) => panic!("not a TLS file error: {e}"),
        Ok(_) => panic!("accepted"),
    }
}

#[tokio::test]
async fn a_certificate_and_its_key_load() {
    assert!(load(CERT, KEY).await.is_ok());
}

#[tokio::test]
async fn bad_files_are_named_with_the_reason() {
    let m = message(load("not a certificate\n", KEY).await);
    assert!(m.contains("tls.crt: holds no PEM certificate"), "{m}");
    let m = message(load(&CERT.replace('M', "#"), KEY).await);
    assert!(m.contains("tls.crt: not a PEM certificate"), "{m}");
    let m = message(load(CERT, CERT).await);
    assert!(m.contains("tls.key: not a PEM private key"), "{m}");
    let m = message(load(CERT, OTHER_KEY).await);
    assert!(
        m.contains("tls.key: does not go with the certificate"),
        "{m}"
    );
}

#[tokio::test]
async fn an_unreadable_file_is_an_error() {
    let missing = std::path::Path::new("/nonexistent/tls.crt");
    match acceptor(missing, missing).await {
        Err(StreamingError::TlsRead { path, .. }) => assert_eq!(path, missing),
        Err(e) => panic!("not a read error: {e}"),
        Ok(_) => panic!("accepted"),
    }
}
