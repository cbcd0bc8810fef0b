#![allow(clippy::unwrap_used)]

use super::*;

fn bearer(token: &Token) -> Vec<u8> {
    format!("Bearer {}", token.expose()).into_bytes()
}

#[test]
fn first_start_writes_two_private_tokens_and_later_starts_read_them() {
    let dir = tempfile::tempdir().unwrap();
    let first = Tokens::load_or_create(dir.path(), TokenPolicy::FirstStartOnly).unwrap();
    assert!(first.created);
    assert_ne!(first.worker, first.client);
    for file in [&first.worker_file, &first.client_file] {
        let mode = std::fs::metadata(file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", file.display());
    }
    assert!(first.worker.expose().starts_with("ecw_") && first.worker.expose().len() == 4 + 64);
    let again = Tokens::load_or_create(dir.path(), TokenPolicy::FirstStartOnly).unwrap();
    assert!(!again.created);
    assert_eq!(again.worker, first.worker);
    assert_eq!(again.client, first.client);
}

#[test]
fn a_workspace_made_by_init_or_the_embedded_mode_gets_tokens_at_its_first_start() {
    // What `expcluster init` leaves (an empty research log) and what an embedded run
    // whose tokens lived in memory leaves (a journal in .expcluster/, no token files)
    // are not workspaces whose tokens were lost.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("research_log.jsonl"), "").unwrap();
    std::fs::create_dir(dir.path().join(TOKEN_DIR)).unwrap();
    std::fs::write(dir.path().join(TOKEN_DIR).join("journal.jsonl"), "{}\n").unwrap();
    let tokens = Tokens::load_or_create(dir.path(), TokenPolicy::FirstStartOnly).unwrap();
    assert!(tokens.created);
    assert!(tokens_issued_before(dir.path()).unwrap());
}

#[test]
fn tokens_made_before_the_marker_existed_mark_the_workspace_when_read() {
    let dir = tempfile::tempdir().unwrap();
    let first = Tokens::load_or_create(dir.path(), TokenPolicy::FirstStartOnly).unwrap();
    std::fs::remove_file(dir.path().join(TOKEN_DIR).join(TOKENS_ISSUED_FILE)).unwrap();
    let again = Tokens::load_or_create(dir.path(), TokenPolicy::FirstStartOnly).unwrap();
    assert!(!again.created);
    assert_eq!(again.worker, first.worker);
    assert!(tokens_issued_before(dir.path()).unwrap());
    std::fs::remove_file(&first.worker_file).unwrap();
    std::fs::remove_file(&first.client_file).unwrap();
    let err = Tokens::load_or_create(dir.path(), TokenPolicy::FirstStartOnly).unwrap_err();
    assert!(matches!(err, AuthError::Missing { .. }), "{err}");
}

#[test]
fn a_missing_or_unreadable_token_file_stops_a_workspace_served_before() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = Tokens::load_or_create(dir.path(), TokenPolicy::FirstStartOnly).unwrap();
    std::fs::remove_file(&tokens.client_file).unwrap();
    let err = Tokens::load_or_create(dir.path(), TokenPolicy::FirstStartOnly).unwrap_err();
    assert!(matches!(err, AuthError::Missing { .. }), "{err}");
    // Both gone, but tokens were issued before: still refused (no silent new tokens).
    std::fs::remove_file(&tokens.worker_file).unwrap();
    let err = Tokens::load_or_create(dir.path(), TokenPolicy::FirstStartOnly).unwrap_err();
    assert!(err.to_string().contains("--new-tokens"), "{err}");
    // An empty file is unreadable, not "no token".
    std::fs::write(&tokens.worker_file, "\n").unwrap();
    std::fs::write(&tokens.client_file, "ecc_x\n").unwrap();
    let err = Tokens::load_or_create(dir.path(), TokenPolicy::FirstStartOnly).unwrap_err();
    assert!(matches!(err, AuthError::Unreadable { .. }), "{err}");
    // A directory where the file should be.
    std::fs::remove_file(&tokens.worker_file).unwrap();
    std::fs::create_dir(&tokens.worker_file).unwrap();
    assert!(Tokens::load_or_create(dir.path(), TokenPolicy::FirstStartOnly).is_err());
    // Asked for explicitly, new tokens replace the lost ones.
    std::fs::remove_dir(&tokens.worker_file).unwrap();
    let fresh = Tokens::load_or_create(dir.path(), TokenPolicy::Regenerate).unwrap();
    assert!(fresh.created);
    assert_ne!(fresh.client, tokens.client);
}

#[test]
fn every_path_needs_its_role_except_health() {
    let tokens = Tokens::ephemeral().unwrap();
    let auth = Authenticator::new(&tokens);
    let worker = bearer(&tokens.worker);
    let client = bearer(&tokens.client);
    let lease = "/expcluster.v1.WorkerService/Lease";
    let submit = "/expcluster.v1.ClientService/SubmitStage";
    assert_eq!(auth.check(HEALTH_PATH, None), Ok(()));
    assert_eq!(auth.check(lease, Some(&worker)), Ok(()));
    assert_eq!(auth.check(submit, Some(&client)), Ok(()));
    assert!(matches!(
        auth.check(lease, Some(&client)),
        Err(Refusal::WrongRole(_))
    ));
    assert!(matches!(
        auth.check(submit, Some(&worker)),
        Err(Refusal::WrongRole(_))
    ));
    for path in [lease, submit, "/other.Service/Method"] {
        assert!(matches!(
            auth.check(path, None),
            Err(Refusal::Unauthenticated(_))
        ));
        assert!(matches!(
            auth.check(path, Some(b"Bearer nope")),
            Err(Refusal::Unauthenticated(_))
        ));
        // The bare token without the scheme, and a prefix of the right token.
        assert!(matches!(
            auth.check(path, Some(tokens.client.expose().as_bytes())),
            Err(Refusal::Unauthenticated(_))
        ));
        assert!(matches!(
            auth.check(path, Some(&client[..client.len() - 1])),
            Err(Refusal::Unauthenticated(_))
        ));
    }
    assert_eq!(auth.check("/other.Service/Method", Some(&worker)), Ok(()));
}

#[test]
fn tokens_are_parsed_strictly_and_never_printed() {
    assert!(Token::parse("  ecc_abc \n").is_ok());
    for bad in [
        "",
        "  \n",
        "a b",
        "tab\there",
        &"x".repeat(MAX_TOKEN_LEN + 1),
    ] {
        assert!(Token::parse(bad).is_err(), "{bad:?}");
    }
    let token = Token::generate(Role::Client).unwrap();
    assert!(!format!("{token:?}").contains(&token.expose()[4..]));
}
