use super::*;
use alloc::string::ToString;

fn name(s: &str) -> Name {
    parse_name(s, &Name::root()).unwrap()
}

const ZONE: &str = r#"
$ORIGIN example.com.
$TTL 1h
@   IN SOA ns1 hostmaster (
        2024010101 ; serial
        7200 3600 1209600
        300 )      ; minimum
    IN NS ns1
    NS ns1.other.net.
ns1 300 A 192.0.2.1
    AAAA 2001:db8::1
www IN 60 CNAME @
txt TXT "hello world" "a\"b;c" plain \065
caa CAA 0 issue "letsencrypt.org"
_sip._tcp SRV 10 20 5060 sip
mx MX 10 mail.example.com.
unk TYPE65000 \# 3 abcdef
ptr PTR www
a\.b A 10.0.0.1
"#;

#[test]
fn parses_the_constructs_of_rfc_1035_section_5() {
    let zone = parse("example.zone", ZONE).unwrap();
    assert_eq!(zone.origin(), &name("example.com."));
    let soa = zone.soa().unwrap();
    assert_eq!(soa.ttl, 3600);
    assert!(
        matches!(&soa.rdatas[0], RData::Soa { serial: 2024010101, minimum: 300, mname, .. } if *mname == name("ns1.example.com."))
    );
    let apex = zone.apex().unwrap();
    assert_eq!(apex.rrset(types::NS).unwrap().rdatas.len(), 2);
    let ns1 = zone.node(&name("NS1.example.com.")).unwrap();
    assert_eq!(ns1.rrset(types::A).unwrap().ttl, 300);
    assert_eq!(ns1.rrset(types::AAAA).unwrap().ttl, 3600, "blank owner, $TTL default");
    let www = zone.node(&name("www.example.com.")).unwrap().rrset(types::CNAME).unwrap();
    assert_eq!((www.ttl, &www.rdatas[0]), (60, &RData::Name(name("example.com."))));
    let txt = &zone.node(&name("txt.example.com.")).unwrap().rrset(types::TXT).unwrap().rdatas[0];
    assert_eq!(txt, &RData::Opaque(b"\x0bhello world\x05a\"b;c\x05plain\x01A".to_vec()));
    let caa = &zone.node(&name("caa.example.com.")).unwrap().rrset(types::CAA).unwrap().rdatas[0];
    assert_eq!(caa, &RData::Opaque(b"\x00\x05issueletsencrypt.org".to_vec()));
    let srv = &zone.node(&name("_sip._tcp.example.com.")).unwrap().rrset(types::SRV).unwrap().rdatas[0];
    assert!(matches!(srv, RData::Srv { port: 5060, target, .. } if *target == name("sip.example.com.")));
    let unk = &zone.node(&name("unk.example.com.")).unwrap().rrset(65000).unwrap().rdatas[0];
    assert_eq!(unk, &RData::Opaque([0xab, 0xcd, 0xef].to_vec()));
    let dotted = Name::from_labels([&b"a.b"[..], b"example", b"com"]).unwrap();
    assert!(zone.node(&dotted).is_some());
    assert!(zone.node(&name("_tcp.example.com.")).unwrap().rrsets.is_empty());
}

#[test]
fn generic_form_of_a_known_type_is_checked() {
    let zone = parse("z", "example. 60 IN SOA . . 1 2 3 4 5\nx.example. TYPE2 \\# 3 016100").unwrap();
    let ns = &zone.node(&name("x.example.")).unwrap().rrset(types::NS).unwrap().rdatas[0];
    assert_eq!(ns, &RData::Name(name("a.")));
    let err = parse("z", "example. 60 IN SOA . . 1 2 3 4 5\nx NS \\# 3 016101").unwrap_err();
    assert_eq!(err.to_string(), "z:2: NS: \\# data is not valid for type 2");
}

fn error(text: &str) -> String {
    parse("bad.zone", text).unwrap_err().to_string()
}

#[test]
fn errors_name_file_line_and_problem() {
    let soa = "example. 60 IN SOA . . 1 2 3 4 5\n";
    assert_eq!(error(&[soa, "a A 1.2.3"].concat()), "bad.zone:2: A: bad IPv4 address \"1.2.3\"");
    assert_eq!(error(&[soa, "\n\na BOGUS x"].concat()), "bad.zone:4: unknown type \"BOGUS\"");
    assert_eq!(error(&[soa, "a TXT \"open"].concat()), "bad.zone:2: quoted string without its closing '\"'");
    assert_eq!(error(&[soa, "a ( TXT x"].concat()), "bad.zone:2: '(' without ')' before the end of the file");
    assert_eq!(error(&[soa, "a CH TXT x"].concat()), "bad.zone:2: class CH is not supported (only IN)");
    assert_eq!(error("a.example. 60 A 1.2.3.4"), "bad.zone:1: the first record must be the zone's SOA");
    assert_eq!(error(&[soa, "a.other. A 1.2.3.4"].concat()), "bad.zone:2: a.other. is outside the zone");
    assert_eq!(error(&[soa, "$INCLUDE x"].concat()), "bad.zone:2: unsupported directive $INCLUDE");
    assert_eq!(
        error(&[soa, "@ SOA . . 2 2 3 4 5"].concat()),
        "bad.zone:2: a second, different SOA record: a zone has exactly one"
    );
    assert_eq!(error("example. IN SOA . . 1 2 3 4 5\nx TXT y\n$TTL 1q"), "bad.zone:3: bad TTL \"1q\"");
    assert!(
        error(&[soa, "x CNAME a\nx A 1.2.3.4"].concat()).starts_with("bad.zone:3: x.example. has a CNAME")
    );
    assert!(error(&[soa, "x TXT \"", &"a".repeat(256), "\""].concat()).contains("longer than 255"));
    assert!(error(&[soa, "x TYPE9 \\# 2 00"].concat()).contains("says 2 octets"));
    assert_eq!(error(""), "bad.zone:1: no records");
    assert!(
        error(&[soa, "x TXT a\\é \"b\\é"].concat()).starts_with("bad.zone:2: quoted string"),
        "escaped UTF-8"
    );
}

#[test]
fn ttls() {
    assert_eq!(parse_ttl("3600"), Some(3600));
    assert_eq!(parse_ttl("1h30m"), Some(5400));
    assert_eq!(parse_ttl("1W"), Some(604800));
    assert_eq!(parse_ttl("1h30"), None);
    assert_eq!(parse_ttl("2147483648"), None);
    assert_eq!(parse_ttl("h"), None);
}

#[test]
fn escapes() {
    assert_eq!(unescape(r"a\046b\\").unwrap(), b"a.b\\");
    assert!(unescape(r"\256").is_err());
    let n = parse_name(r"a\.b.c", &name("org.")).unwrap();
    assert_eq!(n.label_count(), 3);
    assert_eq!(n.to_string(), r"a\.b.c.org.");
}

#[test]
fn bytes_with_a_given_origin() {
    let origin = Name::from_labels([&b"example"[..]]).unwrap();
    let text = b"$TTL 60\n@ SOA ns hostmaster 1 2 3 4 5\nwww A 192.0.2.1\n";
    let zone = parse_bytes("x.zone", text, Some(&origin)).unwrap();
    assert_eq!(zone.origin(), &origin);
    assert!(zone.node(&Name::from_labels([&b"www"[..], &b"example"[..]]).unwrap()).is_some());
    let elsewhere = parse_bytes("x.zone", b"other. 60 SOA . . 1 2 3 4 5\n", Some(&origin)).unwrap_err();
    assert_eq!(elsewhere.to_string(), "x.zone:1: the SOA is at other., not at the zone's origin example.");
    let binary = parse_bytes("x.zone", b"example. 60 SOA . . 1 2 3 4 5\n\n\xff", None).unwrap_err();
    assert_eq!(binary.to_string(), "x.zone:3: not UTF-8 text");
}
