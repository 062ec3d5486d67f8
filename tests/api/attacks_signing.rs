//! Attacks on the derived signing modes (ECDSA P-256, SM2, V11): malformed and degenerate
//! signatures, huge ones, and mode confusion (a signature made in one mode presented as
//! another). Every one is a `401 APIGW.0301` (or the HTTP stack's own 4xx for a header too large
//! to read), never a 5xx; the genuine signature still passes afterwards.

use reqwest::Method;

use crate::helpers::TestApp;
use kafka_tasks::auth::signature::{self, Algorithm, Signer};

const REGION: &str = "cn-north-4";

/// The headers of a GET signed by the admin key in `alg`.
fn signed(app: &TestApp, alg: Algorithm, path: &str) -> Vec<(String, String)> {
    let host = app.base.trim_start_matches("http://").to_owned();
    let base = [("host", host.as_str()), ("x-project-id", app.admin.project_id.as_str())];
    let date = signature::sdk_date(app.clock.now_ms());
    let signer = Signer {
        algorithm: alg,
        access_key: &app.admin.access_key,
        secret_key: &app.admin.secret_key,
        region_service: Some((REGION, "dms")),
    };
    let s = signer.sign("GET", path, "", &base, b"", &date);
    let mut out: Vec<(String, String)> = base.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    out.push(("x-sdk-date".into(), s.sdk_date));
    out.push(("authorization".into(), s.authorization));
    out
}

fn authorization(h: &[(String, String)]) -> String {
    h.iter().find(|(k, _)| k == "authorization").map(|(_, v)| v.clone()).expect("authorization")
}

fn with_authorization(h: &[(String, String)], value: String) -> Vec<(String, String)> {
    h.iter()
        .map(|(k, v)| if k == "authorization" { (k.clone(), value.clone()) } else { (k.clone(), v.clone()) })
        .collect()
}

/// `auth` with its signature replaced by `sig`.
fn resigned(auth: &str, sig: &str) -> String {
    let (head, _) = auth.rsplit_once("Signature=").expect("a signature");
    format!("{head}Signature={sig}")
}

/// `auth` presented as mode `name` (its credential part and signature kept).
fn relabelled(auth: &str, name: &str) -> String {
    let (_, rest) = auth.split_once(' ').expect("a mode");
    format!("{name} {rest}")
}

/// DER of an ECDSA/SM2 signature (r, s) given as big-endian bytes.
fn der(r: &[u8], s: &[u8]) -> String {
    fn int(v: &[u8]) -> Vec<u8> {
        let mut v = v.to_vec();
        if v.first().is_some_and(|b| b & 0x80 != 0) {
            v.insert(0, 0);
        }
        let mut out = vec![0x02, v.len() as u8];
        out.extend(v);
        out
    }
    let body: Vec<u8> = [int(r), int(s)].concat();
    let mut out = vec![0x30, body.len() as u8];
    out.extend(body);
    hex::encode(out)
}

on_sqlite! {
    #[tokio::test]
    async fn malformed_degenerate_and_confused_signatures_are_401_and_the_genuine_one_passes() {
        let app = TestApp::spawn_with(&["--time-scale", "0", "--auth-failure-limit", "100000"]).await;
        let path = format!("/v2/{}/instances", app.project);
        let p256_n = hex::decode("FFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551").expect("hex");
        let sm2_n = hex::decode("FFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFF7203DF6B21C6052B53BBF40939D54123").expect("hex");
        let modes = [
            (Algorithm::Sha256, "SDK-HMAC-SHA256"),
            (Algorithm::Sm3, "SDK-HMAC-SM3"),
            (Algorithm::EcdsaP256, "SDK-ECDSA-P256-SHA256"),
            (Algorithm::Sm2, "SDK-SM2-SM3"),
            (Algorithm::V11, "V11-HMAC-SHA256"),
        ];
        // Each mode's genuine signature passes: the refusals below are refusals of the forgery.
        let genuine: Vec<_> = modes.iter().map(|(alg, _)| signed(&app, *alg, &path)).collect();
        for (h, (_, name)) in genuine.iter().zip(&modes) {
            let res = app.send(Method::GET, &path, None, h).await;
            assert_eq!(res.status, 200, "{name}: {}", res.text);
        }
        let mut forged: Vec<(String, Vec<(String, String)>)> = Vec::new();
        for (i, (alg, name)) in modes.iter().enumerate() {
            let h = &genuine[i];
            let auth = authorization(h);
            let n = if *alg == Algorithm::Sm2 { &sm2_n } else { &p256_n };
            let mut sigs = vec![
                String::new(),
                "zz".into(),
                "00".into(),
                der(&[0], &[0]),
                der(&[1], &[1]),
                der(n, &[1]),
                der(&[1], n),
                der(&[0xff; 64], &[0xff; 64]),
                "30".repeat(2048),
                "a".repeat(6000),
            ];
            if let Some(last) = auth.rsplit_once("Signature=").map(|(_, s)| s.to_owned()) {
                sigs.push(last.to_uppercase().chars().rev().collect());
            }
            for sig in sigs {
                forged.push((format!("{name} with signature {:.40}", sig), with_authorization(h, resigned(&auth, &sig))));
            }
            // Mode confusion: this mode's genuine signature presented as every other mode.
            for (_, other) in modes.iter().filter(|(_, o)| o != name) {
                forged.push((format!("{name} presented as {other}"), with_authorization(h, relabelled(&auth, other))));
            }
        }
        // V11 scoped to another region or service, or a day that is not the date's.
        let v11 = authorization(&genuine[4]);
        for (from, to) in [(REGION, "eu-west-101"), ("/dms,", "/iam,"), ("/20", "/19")] {
            forged.push((format!("V11 with {to}"), with_authorization(&genuine[4], v11.replacen(from, to, 1))));
        }
        for (what, h) in &forged {
            let res = app.send(Method::GET, &path, None, h).await;
            let status = res.status.as_u16();
            assert!((400..500).contains(&status) && status != 404, "{what}: {status} {}", res.text);
            if status == 401 {
                assert_eq!(res.json()["error_code"], "APIGW.0301", "{what}: {}", res.text);
            }
        }
        for (alg, name) in &modes {
            let res = app.send(Method::GET, &path, None, &signed(&app, *alg, &path)).await;
            assert_eq!(res.status, 200, "{name} after the forgeries: {}", res.text);
        }
    }
}
