use super::*;
use crate::config::Config;

fn catalog() -> ProviderCatalog {
    let config = Config::from_toml_str(
        r#"
[providers.acme]
kind = "aitronos"
base_url = "http://127.0.0.1:1/v1"
token_env = "T"
"#,
        "t",
        &[],
    )
    .unwrap();
    ProviderCatalog::new(&config, None, "--provider NAME").unwrap()
}

fn read(input: &[u8]) -> Result<IntakeChunk, IntakeError> {
    read_counting_blanks(input).map(|(chunk, _)| chunk)
}

/// Every chunk of `input`, and the blank rows skipped.
fn read_counting_blanks(input: &[u8]) -> Result<(IntakeChunk, u64), IntakeError> {
    let cat = catalog();
    let mut csv = CsvIntake::new(input, &cat)?;
    let mut all = IntakeChunk::default();
    while let Some(chunk) = csv.next_chunk(2)? {
        all.accepted.extend(chunk.accepted);
        all.rejected.extend(chunk.rejected);
    }
    Ok((all, csv.blank_rows()))
}

fn users(chunk: &IntakeChunk) -> Vec<(u64, &str)> {
    chunk
        .accepted
        .iter()
        .map(|a| (a.line, a.target.user_id.as_str()))
        .collect()
}

fn rejections(chunk: &IntakeChunk) -> Vec<(u64, &str)> {
    chunk
        .rejected
        .iter()
        .map(|r| (r.line, r.code.as_str()))
        .collect()
}

#[test]
fn bom_semicolons_and_aliases() {
    let input = "\u{feff}User ID;Org;Transfer-To\nusr_1;org_a;dept_x\nusr_2;org_a;\n";
    let chunk = read(input.as_bytes()).unwrap();
    assert_eq!(users(&chunk), [(2, "usr_1"), (3, "usr_2")]);
    assert_eq!(
        chunk.accepted[0]
            .target
            .transfer_to_department_id
            .as_ref()
            .unwrap()
            .as_str(),
        "dept_x"
    );
    assert!(chunk.accepted[1].target.transfer_to_department_id.is_none());
}

#[test]
fn tabs_and_crlf() {
    let chunk = read(b"user_id\torganization_id\r\nusr_1\torg_a\r\n").unwrap();
    assert_eq!(users(&chunk), [(2, "usr_1")]);
}

#[test]
fn bad_rows_are_rejected_with_lines_and_good_rows_go_on() {
    let input = "user_id,organization_id,transfer_to_department_id\n\
                 usr_1,org_a,\n\
                 bad,org_a,\n\
                 usr_2,org_a,dept_../x\n\
                 usr_../etc,org_a,\n\
                 usr_3,org_a?x=1,\n\
                 usr_4,org_a,\n";
    let chunk = read(input.as_bytes()).unwrap();
    assert_eq!(users(&chunk), [(2, "usr_1"), (7, "usr_4")]);
    assert_eq!(
        rejections(&chunk),
        [
            (3, "invalid_user_id"),
            (4, "invalid_department_id"),
            (5, "invalid_user_id"),
            (6, "invalid_organization_id")
        ]
    );
}

#[test]
fn duplicates_name_the_first_line() {
    let input = "user_id,org\nusr_1,org_a\nusr_2,org_a\nusr_1,org_a\n";
    let chunk = read(input.as_bytes()).unwrap();
    assert_eq!(rejections(&chunk), [(4, "duplicate_row")]);
    assert!(chunk.rejected[0].message.contains("line 2"));
}

#[test]
fn conflicting_department_is_not_silently_merged() {
    let input = "user_id,org,department_id\nusr_1,org_a,dept_a\nusr_1,org_a,dept_b\n";
    let chunk = read(input.as_bytes()).unwrap();
    assert_eq!(rejections(&chunk), [(3, "conflicting_row")]);
}

#[test]
fn quoted_multiline_cell_keeps_physical_line_numbers() {
    let input = "user_id,org,reason\nusr_1,org_a,\"two\nlines\"\nusr_2,org_a,x\n";
    let chunk = read(input.as_bytes()).unwrap();
    assert_eq!(users(&chunk), [(2, "usr_1"), (4, "usr_2")]);
    assert_eq!(chunk.accepted[0].reason.as_deref(), Some("two\nlines"));
}

#[test]
fn invalid_utf8_rejects_only_that_row() {
    let mut input = b"user_id,org,reason\nusr_1,org_a,\xff\xfe\n".to_vec();
    input.extend_from_slice(b"usr_2,org_a,ok\n");
    let chunk = read(&input).unwrap();
    assert_eq!(rejections(&chunk), [(2, "invalid_encoding")]);
    assert_eq!(users(&chunk), [(3, "usr_2")]);
}

#[test]
fn unknown_provider_and_email_only_rows() {
    let input = "email,org,provider\nx@y.z,org_a,acme\n,org_a,nope\n";
    let chunk = read(input.as_bytes()).unwrap();
    assert_eq!(
        rejections(&chunk),
        [(2, "email_not_supported"), (3, "unknown_provider")]
    );
    let input = "user_id,org,provider\nusr_1,org_a,nope\n";
    let chunk = read(input.as_bytes()).unwrap();
    assert_eq!(rejections(&chunk), [(2, "unknown_provider")]);
}

#[test]
fn effective_at_accepts_dates_and_rfc3339() {
    let input = "user_id,org,effective_at\nusr_1,org_a,2030-01-02\nusr_2,org_a,2030-01-02T03:04:05+01:00\nusr_3,org_a,tomorrow\n";
    let chunk = read(input.as_bytes()).unwrap();
    assert_eq!(chunk.accepted[0].effective_at, Some(1_893_542_400_000));
    assert_eq!(chunk.accepted[1].effective_at, Some(1_893_549_845_000));
    assert_eq!(rejections(&chunk), [(4, "invalid_effective_at")]);
}

#[test]
fn crlf_and_blank_lines_keep_physical_numbers() {
    let input = "user_id,org\r\n\r\nusr_1,org_a\r\n\r\n\r\nusr_2,org_a\r\n";
    let chunk = read(input.as_bytes()).unwrap();
    assert_eq!(users(&chunk), [(3, "usr_1"), (6, "usr_2")]);
}

#[test]
fn whole_input_errors() {
    assert!(matches!(read(b""), Err(IntakeError::Empty)));
    assert!(matches!(read(b"\xef\xbb\xbf\n"), Err(IntakeError::Empty)));
    assert!(matches!(
        read(b"user_id,reason\nusr_1,x\n"),
        Err(IntakeError::Header(_))
    ));
    assert!(matches!(
        read(b"name,org\nx,org_a\n"),
        Err(IntakeError::Header(_))
    ));
}

#[test]
fn blank_lines_and_short_rows() {
    let input = "user_id,org,department_id\n\nusr_1,org_a\n,,\n";
    let chunk = read(input.as_bytes()).unwrap();
    assert_eq!(users(&chunk), [(3, "usr_1")]);
    assert!(chunk.rejected.is_empty());
}

#[test]
fn rows_of_only_delimiters_are_counted() {
    let input = "user_id,org,department_id\n,,\nusr_1,org_a,\n , ,\n\n,,\n";
    let (chunk, blank) = read_counting_blanks(input.as_bytes()).unwrap();
    assert_eq!(users(&chunk), [(3, "usr_1")]);
    assert_eq!(blank, 3, "`,,`, ` , ,` and `,,`; an empty line is no row");
}

#[test]
fn bare_cr_rows_then_crlf_rows_number_every_line() {
    // Old Mac exports end rows in a bare CR; a later edit added CRLF rows.
    let input = "user_id,org\rusr_1,org_a\rusr_2,org_a\r\nusr_3,org_a\n\rusr_4,org_a\r";
    let chunk = read(input.as_bytes()).unwrap();
    assert_eq!(
        users(&chunk),
        [(2, "usr_1"), (3, "usr_2"), (4, "usr_3"), (6, "usr_4")]
    );
}

#[test]
fn a_cr_only_file_is_not_read_whole_as_its_header() {
    let mut input = b"user_id,org\r".to_vec();
    for i in 0..5000 {
        input.extend_from_slice(format!("usr_{i},org_a\r").as_bytes());
    }
    let chunk = read(&input).unwrap();
    assert_eq!(chunk.accepted.len(), 5000);
    assert_eq!(chunk.accepted[4999].line, 5001);
    let endless = vec![b'a'; 2 * 1024 * 1024];
    assert!(matches!(read(&endless), Err(IntakeError::Header(_))));
}

#[test]
fn a_nul_byte_rejects_its_row_only() {
    let input = b"user_id,org,reason\nusr_1,org_a,a\0b\nusr_2,org_a,ok\n";
    let chunk = read(input).unwrap();
    assert_eq!(rejections(&chunk), [(2, "invalid_encoding")]);
    assert_eq!(users(&chunk), [(3, "usr_2")]);
}
