use super::*;

fn link(name: &str, domain: bool, array: bool, typmod: i32, array_name: &str) -> Link {
    Link {
        name: name.to_owned(),
        domain,
        array,
        typmod,
        array_name: Some(array_name.to_owned()),
    }
}

#[test]
fn casts_carry_no_size() {
    let bpchar = link("pg_catalog.bpchar", false, false, -1, "pg_catalog._bpchar");
    let sized = link("public.code", true, false, 12, "public._code");
    let over = link("public.tenant", true, false, -1, "public._tenant");
    let checked = link("public.positive", true, false, -1, "public._positive");
    let int4 = link("pg_catalog.int4", false, false, -1, "pg_catalog._int4");
    assert_eq!(cast(std::slice::from_ref(&bpchar)), "pg_catalog.bpchar");
    // A domain of a sized type, directly or through another domain: its base.
    assert_eq!(cast(&[sized.clone(), bpchar.clone()]), "pg_catalog.bpchar");
    assert_eq!(
        cast(&[over, sized.clone(), bpchar.clone()]),
        "pg_catalog.bpchar"
    );
    // A domain of an unsized type keeps its CHECK.
    assert_eq!(cast(&[checked, int4]), "public.positive");
    // Arrays: of a plain type, itself; of a sized domain, the base's array.
    let array = link("public._code", false, true, -1, "");
    assert_eq!(cast(&[array, sized, bpchar.clone()]), "pg_catalog._bpchar");
    let plain = link("pg_catalog._bpchar", false, true, -1, "");
    assert_eq!(cast(&[plain, bpchar]), "pg_catalog._bpchar");
}
