//! What the TLS series say of a certificate, in Go's words: blackbox's
//! `probe_ssl_last_chain_info` labels and the expiry.
//!
//! blackbox_exporter prints the subject and issuer with Go's
//! `pkix.Name.String()`, the serial number with `%x` of its magnitude and
//! the DNS names joined by commas; dashboards and alerts match those
//! strings, so [`go_name`] reproduces Go's rules exactly (see its docs).

#![forbid(unsafe_code)]

use std::fmt::Write as _;
use x509_parser::der_parser::asn1_rs::Tag;
use x509_parser::prelude::{FromDer as _, GeneralName, X509Certificate};
use x509_parser::x509::{AttributeTypeAndValue, X509Name};

/// A certificate as blackbox_exporter's series show it.
#[non_exhaustive]
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CertFacts {
    /// SHA-256 of the DER, lower-case hex.
    pub fingerprint_sha256: String,
    /// The subject as Go prints a name: `CN=…,O=…,C=…`.
    pub subject: String,
    /// The issuer, printed as the subject.
    pub issuer: String,
    /// The DNS names of the certificate, joined by commas.
    pub subjectalternative: String,
    /// The serial number, lower-case hex without leading zeros.
    pub serialnumber: String,
    /// The end of validity (`notAfter`), Unix seconds.
    pub not_after: i64,
}

/// What the series show of the certificate `der`; `None` when it is not
/// a certificate x509-parser reads.
pub(crate) fn facts(der: &[u8]) -> Option<CertFacts> {
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    let dns_names: Vec<&str> = cert
        .subject_alternative_name()
        .ok()
        .flatten()
        .map(|san| {
            san.value
                .general_names
                .iter()
                .filter_map(|name| match name {
                    GeneralName::DNSName(dns) => Some(*dns),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    Some(CertFacts {
        fingerprint_sha256: hex(ring::digest::digest(&ring::digest::SHA256, der).as_ref()),
        subject: go_name(cert.subject()),
        issuer: go_name(cert.issuer()),
        subjectalternative: dns_names.join(","),
        serialnumber: hex(&serial_magnitude(cert.raw_serial())),
        not_after: cert.validity().not_after.timestamp(),
    })
}

/// The `notAfter` of the certificate `der`, Unix seconds.
pub(crate) fn not_after(der: &[u8]) -> Option<i64> {
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    Some(cert.validity().not_after.timestamp())
}

/// Lower-case hex, as Go's `%x` and `hex.EncodeToString` write bytes.
fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        let _ = write!(out, "{byte:02x}");
    }
    out
}

/// The bytes of the serial's absolute value without leading zeros, as
/// Go's `big.Int.Bytes()` gives them: DER `00 f1 e2` is `f1 e2`, and a
/// negative serial (which Go reads) is its magnitude.
fn serial_magnitude(raw: &[u8]) -> Vec<u8> {
    let negative = raw.first().is_some_and(|first| first & 0x80 != 0);
    let mut bytes = raw.to_vec();
    if negative {
        // Two's complement: invert, add one.
        let mut carry = true;
        for byte in bytes.iter_mut().rev() {
            *byte = !*byte;
            if carry {
                let (sum, over) = byte.overflowing_add(1);
                *byte = sum;
                carry = over;
            }
        }
    }
    let first = bytes
        .iter()
        .position(|byte| *byte != 0)
        .unwrap_or(bytes.len());
    bytes.split_off(first)
}

/// The attributes Go parses into `pkix.Name`'s own fields, in the order
/// `ToRDNSequence` writes them, with the names `String()` prints: the
/// last arc of `2.5.4.x`.
const KNOWN: [(u64, &str); 9] = [
    (6, "C"),
    (8, "ST"),
    (7, "L"),
    (9, "STREET"),
    (17, "POSTALCODE"),
    (10, "O"),
    (11, "OU"),
    (3, "CN"),
    (5, "SERIALNUMBER"),
];

/// The last arc of a `2.5.4.x` attribute Go knows, if it is one.
fn known_arc(attribute: &AttributeTypeAndValue<'_>) -> Option<u64> {
    let arcs: Vec<u64> = attribute.attr_type().iter()?.collect();
    match arcs.as_slice() {
        [2, 5, 4, arc] if KNOWN.iter().any(|(known, _)| known == arc) => Some(*arc),
        _ => None,
    }
}

/// `name` as Go's `pkix.Name.String()` prints it (crypto/x509/pkix).
///
/// Go first parses the name into its fields, then prints them again:
/// - attributes other than C, ST, L, STREET, POSTALCODE, O, OU, CN and
///   SERIALNUMBER come first, each alone, in the certificate's order;
/// - then C, ST, L, STREET, POSTALCODE, O and OU, all values of one type
///   in one RDN (joined by `+`, in the certificate's order), then CN and
///   SERIALNUMBER, of which Go keeps only the last value;
/// - the sequence is printed reversed, RDNs joined by `,`;
/// - an attribute of another type prints as `<dotted OID>=#<hex of its
///   DER>`, re-encoded as Go's `asn1.Marshal` encodes a string
///   (PrintableString when it can, else UTF8String);
/// - in values, `, + " \ < > ;` are escaped with `\`, as are a space at
///   the first or last byte and a `#` at the first.
pub(crate) fn go_name(name: &X509Name<'_>) -> String {
    let attributes: Vec<&AttributeTypeAndValue<'_>> = name.iter_attributes().collect();
    // Each RDN as (type name or None for a non-standard one, values).
    let mut rdns: Vec<Vec<String>> = Vec::new();
    for attribute in &attributes {
        if known_arc(attribute).is_none() {
            rdns.push(vec![other_attribute(attribute)]);
        }
    }
    for (arc, type_name) in KNOWN {
        let values: Vec<String> = attributes
            .iter()
            .filter(|attribute| known_arc(attribute) == Some(arc))
            .map(|attribute| value_text(attribute))
            .collect();
        let values = match arc {
            // Go's CommonName and SerialNumber hold one string: the last.
            3 | 5 => values.into_iter().last().into_iter().collect(),
            _ => values,
        };
        if values.iter().all(String::is_empty) && matches!(arc, 3 | 5) {
            // Go writes CN and SERIALNUMBER only when not empty.
            continue;
        }
        if values.is_empty() {
            continue;
        }
        rdns.push(
            values
                .iter()
                .map(|value| format!("{type_name}={}", escape(value)))
                .collect(),
        );
    }
    let printed: Vec<String> = rdns.iter().rev().map(|rdn| rdn.join("+")).collect();
    printed.join(",")
}

/// A non-standard attribute as Go prints it: `1.2.3=#<hex DER>`.
fn other_attribute(attribute: &AttributeTypeAndValue<'_>) -> String {
    let value = value_text(attribute);
    format!(
        "{}=#{}",
        attribute.attr_type().to_id_string(),
        hex(&go_marshal_string(&value))
    )
}

/// The DER Go's `asn1.Marshal` writes for a string: a PrintableString if
/// every character is one it may hold, else a UTF8String.
fn go_marshal_string(value: &str) -> Vec<u8> {
    let printable = value
        .bytes()
        .all(|byte| byte.is_ascii_alphanumeric() || b" '()+,-./:=?".contains(&byte));
    let tag = if printable { 0x13 } else { 0x0c };
    let mut der = vec![tag];
    let length = value.len();
    if length < 0x80 {
        der.push(u8::try_from(length).unwrap_or(0));
    } else {
        let bytes = length.to_be_bytes();
        let first = bytes.iter().position(|byte| *byte != 0).unwrap_or(0);
        der.push(0x80 | u8::try_from(bytes.len() - first).unwrap_or(0));
        der.extend_from_slice(&bytes[first..]);
    }
    der.extend_from_slice(value.as_bytes());
    der
}

/// The value of an attribute as the Go string it parses to: the string
/// types decoded (BMPString from UTF-16), anything else as its bytes.
fn value_text(attribute: &AttributeTypeAndValue<'_>) -> String {
    let value = attribute.attr_value();
    let data = value.data;
    if value.header.tag() == Tag::BmpString {
        let units: Vec<u16> = data
            .chunks_exact(2)
            .map(|pair| u16::from_be_bytes([pair[0], pair[1]]))
            .collect();
        return String::from_utf16_lossy(&units);
    }
    String::from_utf8_lossy(data).into_owned()
}

/// A value escaped as Go's `RDNSequence.String()` escapes it.
fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let last = value.len().saturating_sub(1);
    for (at, c) in value.char_indices() {
        let escaped = match c {
            ',' | '+' | '"' | '\\' | '<' | '>' | ';' => true,
            ' ' => at == 0 || at == last,
            '#' => at == 0,
            _ => false,
        };
        if escaped {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Unix `seconds` as UTC in RFC 3339 (`2027-01-06T16:39:19Z`), for the
/// step log; the seconds themselves when out of the calendar's range.
pub(crate) fn utc(seconds: i64) -> String {
    match x509_parser::time::ASN1Time::from_timestamp(seconds) {
        Ok(time) => {
            let at = time.to_datetime();
            format!(
                "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
                at.year(),
                u8::from(at.month()),
                at.day(),
                at.hour(),
                at.minute(),
                at.second()
            )
        }
        Err(_) => format!("{seconds} (Unix time)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, SerialNumber};

    /// DER of one length-prefixed item.
    fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
        assert!(content.len() < 0x80, "short forms only in these tests");
        let mut out = vec![tag, u8::try_from(content.len()).unwrap()];
        out.extend_from_slice(content);
        out
    }

    /// The DER OID of `2.5.4.<arc>`.
    fn x520(arc: u8) -> Vec<u8> {
        vec![0x55, 0x04, arc]
    }

    /// An attribute: the OID's content bytes, the value's tag, the value.
    type Attribute<'a> = (Vec<u8>, u8, &'a [u8]);

    /// The `Name` of these RDNs, each a set of attributes.
    fn name(rdns: &[&[Attribute<'_>]]) -> Vec<u8> {
        let mut sequence = Vec::new();
        for rdn in rdns {
            let mut set = Vec::new();
            for (oid, tag, value) in *rdn {
                let mut pair = tlv(0x06, oid);
                pair.extend(tlv(*tag, value));
                set.extend(tlv(0x30, &pair));
            }
            sequence.extend(tlv(0x31, &set));
        }
        tlv(0x30, &sequence)
    }

    fn printed(der: &[u8]) -> String {
        let (rest, parsed) = X509Name::from_der(der).expect("a Name");
        assert!(rest.is_empty());
        go_name(&parsed)
    }

    const PRINTABLE: u8 = 0x13;
    const UTF8: u8 = 0x0c;

    #[test]
    fn a_name_prints_as_go_prints_it_reversed_and_escaped() {
        // openssl -subj "/C=US/O=Acme, Inc./OU=Ops/CN=localhost", as
        // Debian's blackbox_exporter 0.23 printed it (design §1).
        let der = name(&[
            &[(x520(6), PRINTABLE, b"US")],
            &[(x520(10), UTF8, b"Acme, Inc.")],
            &[(x520(11), UTF8, b"Ops")],
            &[(x520(3), UTF8, b"localhost")],
        ]);
        assert_eq!(printed(&der), r"CN=localhost,OU=Ops,O=Acme\, Inc.,C=US");
    }

    #[test]
    fn go_reorders_by_type_and_joins_values_of_one_type_with_plus() {
        // In the certificate: CN first, two OUs apart, O between them, a
        // street and a postal code; Go prints in its own type order, both
        // OUs in one RDN, in the certificate's order.
        let der = name(&[
            &[(x520(3), UTF8, b"web")],
            &[(x520(11), UTF8, b"a")],
            &[(x520(10), UTF8, b"Org")],
            &[(x520(11), UTF8, b"b"), (x520(7), UTF8, b"Paris")],
            &[(x520(17), UTF8, b"75001"), (x520(9), UTF8, b"1 Rue")],
            &[(x520(8), UTF8, b"IDF"), (x520(5), UTF8, b"42")],
        ]);
        assert_eq!(
            printed(&der),
            "SERIALNUMBER=42,CN=web,OU=a+OU=b,O=Org,POSTALCODE=75001,STREET=1 Rue,L=Paris,ST=IDF"
        );
    }

    #[test]
    fn only_the_last_common_name_is_kept_as_go_keeps_it() {
        let der = name(&[&[(x520(3), UTF8, b"first")], &[(x520(3), UTF8, b"second")]]);
        assert_eq!(printed(&der), "CN=second");
    }

    #[test]
    fn values_are_escaped_as_go_escapes_them() {
        let der = name(&[&[(x520(10), UTF8, b" #a+b;c<d>e\"f\\g#h ")]]);
        // The '#' is not the first byte: the space is.
        assert_eq!(printed(&der), r#"O=\ #a\+b\;c\<d\>e\"f\\g#h\ "#);
        assert_eq!(printed(&name(&[&[(x520(10), UTF8, b"#x")]])), r"O=\#x");
        // A lone space is both first and last.
        assert_eq!(printed(&name(&[&[(x520(10), UTF8, b" ")]])), r"O=\ ");
    }

    #[test]
    fn other_attributes_print_as_oid_and_hex_of_go_der_at_the_end() {
        // emailAddress (1.2.840.113549.1.9.1), an IA5String in the
        // certificate: Go re-encodes it as a UTF8String (0c), '@' not
        // being printable; a dc= (0.9.2342.19200300.100.1.25) "com" as a
        // PrintableString (13). They come first in Go's sequence, so last
        // once reversed, in reverse certificate order.
        let email = vec![0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x01];
        let dc = vec![0x09, 0x92, 0x26, 0x89, 0x93, 0xf2, 0x2c, 0x64, 0x01, 0x19];
        let der = name(&[
            &[(dc, 0x16, b"com")],
            &[(x520(3), UTF8, b"x")],
            &[(email, 0x16, b"a@b")],
        ]);
        assert_eq!(
            printed(&der),
            "CN=x,1.2.840.113549.1.9.1=#0c03614062,0.9.2342.19200300.100.1.25=#1303636f6d"
        );
    }

    #[test]
    fn serials_are_the_magnitude_in_lower_hex() {
        assert_eq!(hex(&serial_magnitude(&[0x00, 0xf1, 0xe2])), "f1e2");
        assert_eq!(hex(&serial_magnitude(&[0x01, 0x0a])), "010a");
        assert_eq!(hex(&serial_magnitude(&[0x00])), "");
        // -2 is ff fe in two's complement; Go's Bytes() gives 02.
        assert_eq!(hex(&serial_magnitude(&[0xff, 0xfe])), "02");
    }

    #[test]
    fn a_certificate_gives_go_strings_its_dns_names_and_its_fingerprint() {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec![
            "localhost".to_owned(),
            "127.0.0.1".to_owned(),
            "foo.example".to_owned(),
        ])
        .unwrap();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CountryName, "US");
        dn.push(DnType::OrganizationName, "Acme, Inc.");
        dn.push(DnType::OrganizationalUnitName, "Ops");
        dn.push(DnType::CommonName, "localhost");
        params.distinguished_name = dn;
        params.serial_number = Some(SerialNumber::from_slice(&[0x00, 0xf1, 0xe2]));
        params.not_after = rcgen::date_time_ymd(2027, 1, 6);
        let cert = params.self_signed(&key).unwrap();
        let facts = facts(cert.der()).expect("a certificate");
        assert_eq!(facts.subject, r"CN=localhost,OU=Ops,O=Acme\, Inc.,C=US");
        assert_eq!(facts.issuer, facts.subject);
        // The IP address SAN is not a DNS name.
        assert_eq!(facts.subjectalternative, "localhost,foo.example");
        assert_eq!(facts.serialnumber, "f1e2");
        assert_eq!(facts.not_after, 1_799_193_600, "2027-01-06T00:00:00Z");
        let expected = ring::digest::digest(&ring::digest::SHA256, cert.der());
        assert_eq!(
            hex(ring::digest::digest(&ring::digest::SHA256, b"abc").as_ref()),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(facts.fingerprint_sha256, hex(expected.as_ref()));
        assert_eq!(
            facts.fingerprint_sha256,
            facts.fingerprint_sha256.to_lowercase()
        );
        assert_eq!(not_after(cert.der()), Some(1_799_193_600));
        assert_eq!(super::facts(b"not a certificate"), None);
    }
}
