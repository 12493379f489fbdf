//! Sample values of every built-in base type PostgreSQL 15 ships with a text form, and of the
//! other kinds of type a column can have (arrays, domains, an enum, a row type, sized types),
//! for the type matrix (`tests/type_matrix.rs`). Each value is the text PostgreSQL reads; each
//! type's values are distinct under its own equality, so they can be a key.

/// Built-in base types (`pg_type.typname`) and their sample values.
pub const BASE: &[(&str, &[&str])] = &[
    (
        "aclitem",
        &[
            "postgres=r/postgres",
            "postgres=arw/postgres",
            "=r/postgres",
        ],
    ),
    ("bit", &["1010", "0001", "111"]),
    ("bool", &["true", "false"]),
    ("box", &["(1,1),(0,0)", "(3,3),(1,1)", "(2,2),(0,0)"]),
    ("bpchar", &["a", "acmecorp", "b c"]),
    ("bytea", &["\\x00", "\\xdeadbeef", "\\x2c22"]),
    ("char", &["a", ",", "\""]),
    ("cid", &["1", "2", "300"]),
    ("cidr", &["10.0.0.0/8", "192.168.1.0/24", "::1/128"]),
    ("circle", &["<(0,0),1>", "<(1,1),2>", "<(2,0),0.5>"]),
    ("date", &["2026-01-02", "0044-03-15 BC", "infinity"]),
    ("float4", &["1.5", "-0", "NaN", "3.4028235e+38"]),
    (
        "float8",
        &["0.1", "-1e+300", "Infinity", "1.0000000000000002"],
    ),
    ("inet", &["10.0.0.1", "10.0.0.1/8", "::1"]),
    ("int2", &["-32768", "0", "32767"]),
    ("int4", &["-2147483648", "7", "2147483647"]),
    (
        "int8",
        &[
            "-9223372036854775808",
            "9007199254740993",
            "9223372036854775807",
        ],
    ),
    ("interval", &["1 day", "-00:00:01.5", "1 year 2 mons"]),
    ("json", &["{\"a\": 1}", "[1, \"x,y\"]", "\"text\""]),
    ("jsonb", &["{\"a\": 1}", "[1, \"x,y\"]", "\"text\"", "null"]),
    ("jsonpath", &["$.a", "$[*] ? (@ > 1)", "$.b"]),
    ("line", &["{1,-1,0}", "{1,0,-3}", "{0,1,-2}"]),
    ("lseg", &["[(0,0),(1,1)]", "[(1,0),(2,2)]", "[(0,1),(3,3)]"]),
    (
        "macaddr",
        &[
            "08:00:2b:01:02:03",
            "00:00:00:00:00:00",
            "ff:ff:ff:ff:ff:ff",
        ],
    ),
    (
        "macaddr8",
        &[
            "08:00:2b:01:02:03:04:05",
            "00:00:00:00:00:00:00:00",
            "ff:ff:ff:ff:ff:ff:ff:ff",
        ],
    ),
    ("money", &["1.50", "-3.00", "1000000.99"]),
    ("name", &["abc", "a b", "z"]),
    (
        "numeric",
        &[
            "1.25",
            "-0.000000000000000000001",
            "NaN",
            "123456789012345678901234567890.123",
        ],
    ),
    ("oid", &["1", "4294967295", "100"]),
    (
        "path",
        &["[(0,0),(1,1)]", "((0,0),(1,1),(2,0))", "[(5,5),(6,6)]"],
    ),
    ("pg_lsn", &["0/0", "16/B374D848", "FFFFFFFF/FFFFFFFF"]),
    ("pg_snapshot", &["10:20:10,14,15", "1:1:", "5:9:6"]),
    ("point", &["(0,0)", "(1.5,-2)", "(3,3)"]),
    (
        "polygon",
        &[
            "((0,0),(1,1),(2,0))",
            "((0,0),(0,1),(1,1),(1,0))",
            "((5,5),(6,6),(7,5))",
        ],
    ),
    ("refcursor", &["cur", "a,b", "c"]),
    ("regclass", &["pg_class", "pg_type", "pg_attribute"]),
    ("regcollation", &["\"C\"", "\"POSIX\"", "ucs_basic"]),
    ("regconfig", &["english", "simple", "german"]),
    ("regdictionary", &["simple", "english_stem", "german_stem"]),
    (
        "regnamespace",
        &["pg_catalog", "public", "information_schema"],
    ),
    ("regoper", &["||/", "|/", "0"]),
    (
        "regoperator",
        &[
            "+(integer,integer)",
            "-(integer,integer)",
            "*(bigint,bigint)",
        ],
    ),
    ("regproc", &["now", "version", "pg_backend_pid"]),
    ("regprocedure", &["now()", "lower(text)", "upper(text)"]),
    ("regrole", &["postgres", "pg_monitor", "pg_read_all_data"]),
    ("regtype", &["integer", "text", "\"char\""]),
    ("text", &["plain", "a,b \"c\"", "", "trailing  "]),
    ("tid", &["(0,1)", "(1,2)", "(4294967295,65535)"]),
    ("time", &["10:00:00.5", "00:00:00", "24:00:00"]),
    (
        "timestamp",
        &[
            "2024-05-01 10:00:00.5",
            "0044-03-15 12:00:00 BC",
            "infinity",
            "10000-01-01 00:00:00",
        ],
    ),
    (
        "timestamptz",
        &[
            "2024-05-01 10:00:00.5+00",
            "0044-03-15 12:00:00+00 BC",
            "-infinity",
            "2024-05-01 10:00:00+02",
        ],
    ),
    ("timetz", &["10:00:00+02", "00:00:00.5-05", "23:59:59+00"]),
    ("tsquery", &["'a' & 'b'", "'x' | 'y'", "!'z'"]),
    ("tsvector", &["'a' 'b'", "'x':1A", "'y,z'"]),
    ("txid_snapshot", &["10:20:10,14,15", "1:1:", "5:9:6"]),
    (
        "uuid",
        &[
            "00000000-0000-0000-0000-000000000000",
            "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
            "ffffffff-ffff-ffff-ffff-ffffffffffff",
        ],
    ),
    ("varbit", &["1", "10101", ""]),
    ("varchar", &["x", "a,b", "\"q\""]),
    ("xid", &["1", "2", "4294967295"]),
    ("xid8", &["1", "2", "18446744073709551615"]),
    ("xml", &["<a/>", "<b>x,y</b>", "text"]),
];

/// Base types whose input function refuses every text: no value can be written to them, so no
/// role can be served or tested (the matrix checks that they refuse).
pub const NO_TEXT_INPUT: &[&str] = &[
    "gtsvector",
    "pg_brin_bloom_summary",
    "pg_brin_minmax_multi_summary",
    "pg_dependencies",
    "pg_mcv_list",
    "pg_ndistinct",
    "pg_node_tree",
];

/// The types the matrix defines before its tables (`CREATE DOMAIN`, `CREATE TYPE`).
pub const DEFINITIONS: &str = "
    CREATE DOMAIN {p}_plain AS text;
    CREATE DOMAIN {p}_positive AS integer CHECK (VALUE > 0);
    CREATE DOMAIN {p}_code AS char(8);
    CREATE DOMAIN {p}_flag AS boolean;
    CREATE DOMAIN {p}_moment AS timestamptz;
    CREATE DOMAIN {p}_amount AS numeric;
    CREATE TYPE {p}_mood AS ENUM ('sad', 'ok', 'happy');
    CREATE TYPE {p}_pair AS (a integer, b text);
";

/// Other kinds of type, as a column declares them (`{p}` is the test's prefix), and samples.
pub const OTHERS: &[(&str, &[&str])] = &[
    ("integer[]", &["{1,2}", "{}", "{3,NULL}"]),
    ("text[]", &["{a,\"b,c\"}", "{\"\"}", "{x}"]),
    // Arrays of two dimensions, of jsonb and of a row type: written as nested JSON, and read
    // back by PostgreSQL's own JSON mapping.
    ("bigint[]", &["{{1,2},{3,4}}", "{5}", "{{1,2}}"]),
    (
        "jsonb[]",
        &["{\"\\\"abc\\\"\",\"{\\\"a\\\": 1}\"}", "{}", "{\"[1, 2]\"}"],
    ),
    (
        "{p}_pair[]",
        &["{\"(1,x)\"}", "{\"(2,\\\"a,b\\\")\"}", "{}"],
    ),
    ("{p}_plain", &["one", "two,three", ""]),
    ("{p}_positive", &["1", "20", "300"]),
    ("{p}_code", &["a", "acmecorp", "b c"]),
    ("{p}_flag", &["true", "false", "t"]),
    (
        "{p}_moment",
        &[
            "2024-05-01 10:00:00+00",
            "1999-12-31 23:59:59.5+00",
            "2024-05-01 10:00:01+00",
        ],
    ),
    ("{p}_amount", &["1.000000000000000000001", "-2", "0.5"]),
    ("{p}_mood", &["sad", "ok", "happy"]),
    ("{p}_pair", &["(1,x)", "(2,\"a,b\")", "(,)"]),
    ("char(8)", &["a", "acmecorp", "acme"]),
    ("char(4)", &["a", "ab", "abcd"]),
    ("bit(8)", &["10101010", "00000000", "11111111"]),
    ("varchar(3)", &["abc", "a", ""]),
    ("numeric(5,2)", &["1.25", "-999.99", "0.50"]),
    (
        "timestamptz(0)",
        &[
            "2024-05-01 10:00:00+00",
            "2024-05-01 10:00:01+00",
            "1999-12-31 23:59:59+00",
        ],
    ),
    ("interval(0)", &["1 day", "00:00:01", "2 years"]),
    ("numeric(5,2)[]", &["{1.25}", "{1.23,NULL}", "{}"]),
    ("varchar(3)[]", &["{abc}", "{\"a,b\"}", "{\"\"}"]),
    (
        "timestamptz(0)[]",
        &[
            "{\"2024-05-01 10:00:00+00\"}",
            "{\"2024-05-01 10:00:01+00\"}",
            "{}",
        ],
    ),
];
