use super::*;
use serde_json::json;

fn spec(jwks: Value) -> IssuerSpec {
    IssuerSpec {
        name: "idp".into(),
        issuer: "https://idp.example".into(),
        audience: "writ".into(),
        jwks: JwksSource::Keys(jwks),
        principal_type: "Agent".into(),
        claim: "sub".into(),
        jwks_ca: None,
        trust_domain: None,
    }
}

#[test]
fn specs_are_checked_before_they_are_registered() {
    let okp = json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo", "kid": "a"}]});
    assert!(spec(okp.clone()).validate().is_ok());
    let mut s = spec(okp.clone());
    s.principal_type = "Agent::\"x\"".into();
    assert!(s.validate().is_err());
    let mut s = spec(okp.clone());
    s.jwks = JwksSource::Url("http://idp.example/jwks".into());
    assert!(s.validate().unwrap_err().to_string().contains("not https"));
    let mut s = spec(okp.clone());
    s.name = "a b".into();
    assert!(s.validate().is_err());
    for (td, ok) in [
        ("example.org", true),
        ("Example.org", false),
        ("a/b", false),
        ("", false),
    ] {
        let mut s = spec(okp.clone());
        s.trust_domain = Some(td.into());
        assert_eq!(s.validate().is_ok(), ok, "{td}");
    }
    // A symmetric key is no signing key of an issuer.
    let oct = json!({"keys": [{"kty": "oct", "k": "c2VjcmV0", "kid": "h"}]});
    assert!(spec(oct)
        .validate()
        .unwrap_err()
        .to_string()
        .contains("no usable"));
}

#[tokio::test]
async fn unsigned_and_hmac_tokens_are_refused_by_name() {
    let okp = json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo", "kid": "a"}]});
    let v = Verifier::new();
    let enc = |v: Value| URL_SAFE_NO_PAD.encode(serde_json::to_vec(&v).unwrap());
    let claims = enc(
        json!({"iss": "https://idp.example", "aud": "writ", "sub": "x", "exp": 2_000_000_000u64}),
    );
    for (alg, want) in [
        ("none", "`none` is not allowed"),
        ("HS256", "`HS256` is not allowed"),
    ] {
        let t = format!("{}.{claims}.", enc(json!({"alg": alg, "kid": "a"})));
        let e = v
            .verify(&[spec(okp.clone())], &t, 1_000, 5)
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains(want), "{e}");
    }
    let t = format!("{}.{claims}.AAAA", enc(json!({"alg": "EdDSA", "kid": "b"})));
    let e = v
        .verify(&[spec(okp.clone())], &t, 1_000, 5)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("key id \"b\""), "{e}");
    assert!(!looks_like_jwt("writ_abc"));
    assert!(looks_like_jwt(&t));
}
