//! Kernel addresses in JSON as `"0xffff..."` strings: they exceed 2^53, beyond what many JSON
//! readers (JavaScript's among them) hold exactly as numbers.

pub fn address<S: serde::Serializer>(value: &u64, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&format_args!("{value:#x}"))
}

#[cfg(test)]
mod tests {
    #[derive(serde::Serialize)]
    struct Folio {
        #[serde(serialize_with = "super::address")]
        folio: u64,
    }

    #[test]
    fn addresses_are_hex_strings() {
        let json = serde_json::to_string(&Folio {
            folio: 0xffff_ea00_0012_3400,
        })
        .unwrap();
        assert_eq!(json, r#"{"folio":"0xffffea0000123400"}"#);
    }
}
