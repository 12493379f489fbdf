use super::*;

#[test]
fn csv_fields_are_quoted_as_rfc_4180_says() {
    let mut out = BytesMut::new();
    for (i, value) in [
        Some("plain"),
        Some("a,b"),
        Some("say \"hi\""),
        Some("two\nlines"),
        Some(""),
        None,
    ]
    .into_iter()
    .enumerate()
    {
        if i > 0 {
            out.put_u8(b',');
        }
        field(&mut out, value);
    }
    assert_eq!(
        &out[..],
        b"plain,\"a,b\",\"say \"\"hi\"\"\",\"two\nlines\",\"\","
    );
}

#[test]
fn csv_records_read_back_as_postgresql_writes_them() {
    let record = |line: &[u8]| record(line);
    assert_eq!(
        record(b"1,plain,,\"\",\"a,b\",\"say \"\"hi\"\"\",\"two\nlines\"\n"),
        Some(vec![
            Some("1".to_owned()),
            Some("plain".to_owned()),
            None,
            Some(String::new()),
            Some("a,b".to_owned()),
            Some("say \"hi\"".to_owned()),
            Some("two\nlines".to_owned()),
        ])
    );
    assert_eq!(record(b"x\n"), Some(vec![Some("x".to_owned())]));
    assert_eq!(record(b",\n"), Some(vec![None, None]));
    // Not a record: no line end, an unclosed quote, a quote inside a bare field, text
    // after a closing quote.
    for bad in [&b"1,2"[..], b"\"open\n", b"a\"b\n", b"\"a\"b\n"] {
        assert_eq!(record(bad), None, "{:?}", String::from_utf8_lossy(bad));
    }
}

#[test]
fn timestamps_are_rewritten_where_the_sql_expression_would() {
    let stamps = Stamps::new(vec![(3, false), (1, true)]);
    let mut out = BytesMut::new();
    for row in [
        &b"1,2024-05-01 10:00:00.5+00,x,2024-05-01 10:00:00\n"[..],
        b"\"a,\"\"b\",2024-05-01 10:00:00+00,\"q,\n\",0044-03-15 12:00:00 BC\n",
        b"2,infinity,,10000-01-01 00:00:00\n",
        b"3,0044-03-15 12:00:00+00 BC,,-infinity\n",
        b"4,,,\n",
    ] {
        stamps.push(row, &mut out);
    }
    assert_eq!(
        String::from_utf8_lossy(&out),
        "1,2024-05-01T10:00:00.5+00:00,x,2024-05-01T10:00:00\n\
         \"a,\"\"b\",2024-05-01T10:00:00+00:00,\"q,\n\",0044-03-15 12:00:00 BC\n\
         2,infinity,,10000-01-01 00:00:00\n\
         3,0044-03-15 12:00:00+00 BC,,-infinity\n\
         4,,,\n"
    );
    // A row shorter than the columns (it cannot come from COPY) is passed on unchanged.
    let mut out = BytesMut::new();
    Stamps::new(vec![(5, true)]).push(b"1,2\n", &mut out);
    assert_eq!(&out[..], b"1,2\n");
}
