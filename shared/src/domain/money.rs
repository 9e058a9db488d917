//! Quantities, prices and currencies. Prices are exact decimals, never floats.

use crate::domain::rejection::{Rejection, RejectionCode};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Most units of stock one supplier can report for one product.
pub const MAX_QUANTITY: i64 = 1_000_000_000;
/// Most decimal places a price may have (after trailing zeros are dropped).
pub const MAX_PRICE_SCALE: u32 = 4;
/// Highest price accepted: 10^12 - 1 (fits `NUMERIC(20,4)`).
pub const MAX_PRICE: Decimal = Decimal::from_parts(3_567_587_327, 232, 0, false, 0); // 999_999_999_999

/// Units in stock: `0..=MAX_QUANTITY`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "i64", into = "i64")]
pub struct Quantity(i64);

impl Quantity {
    pub fn new(n: i64) -> Result<Self, Rejection> {
        if n < 0 {
            return Err(Rejection::new(
                RejectionCode::QuantityNegative,
                format!("quantity {n} is below zero"),
            ));
        }
        if n > MAX_QUANTITY {
            return Err(Rejection::new(
                RejectionCode::QuantityTooLarge,
                format!("quantity {n} is above the limit of {MAX_QUANTITY}"),
            ));
        }
        Ok(Self(n))
    }

    /// Parses the text of a JSON number that must be a whole number.
    pub fn parse_json_number(text: &str) -> Result<Self, Rejection> {
        let digits = text.strip_prefix('-').unwrap_or(text);
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(Rejection::new(
                RejectionCode::QuantityNotInteger,
                format!("quantity {text} is not a whole number"),
            ));
        }
        match text.parse::<i64>() {
            Ok(n) => Self::new(n),
            Err(_) if text.starts_with('-') => Err(Rejection::new(
                RejectionCode::QuantityNegative,
                format!("quantity {text} is below zero"),
            )),
            Err(_) => Err(Rejection::new(
                RejectionCode::QuantityTooLarge,
                format!("quantity {text} is above the limit of {MAX_QUANTITY}"),
            )),
        }
    }

    pub fn get(self) -> i64 {
        self.0
    }
}

impl TryFrom<i64> for Quantity {
    type Error = Rejection;
    fn try_from(n: i64) -> Result<Self, Rejection> {
        Self::new(n)
    }
}

impl From<Quantity> for i64 {
    fn from(q: Quantity) -> i64 {
        q.0
    }
}

/// A non-negative price with at most [`MAX_PRICE_SCALE`] decimal places, kept normalised
/// (`29.90` and `29.9` are the same price). Serialised as a decimal string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "Decimal", into = "Decimal")]
pub struct Price(Decimal);

impl Price {
    pub fn new(d: Decimal) -> Result<Self, Rejection> {
        if d.is_sign_negative() && !d.is_zero() {
            return Err(Rejection::new(
                RejectionCode::PriceNegative,
                format!("price {d} is below zero"),
            ));
        }
        let d = d.normalize();
        if d.scale() > MAX_PRICE_SCALE {
            return Err(Rejection::new(
                RejectionCode::PriceTooPrecise,
                format!(
                    "price {d} has {} decimal places, at most {MAX_PRICE_SCALE} are allowed",
                    d.scale()
                ),
            ));
        }
        if d > MAX_PRICE {
            return Err(Rejection::new(
                RejectionCode::PriceTooLarge,
                format!("price {d} is above {MAX_PRICE}"),
            ));
        }
        // `-0` normalises to a positive zero.
        Ok(Self(d.abs()))
    }

    /// Parses a plain decimal (`29.99`, `-1`, `0.5`); exponents and other forms are rejected.
    pub fn parse_decimal(text: &str) -> Result<Self, Rejection> {
        let plain = {
            let body = text.strip_prefix('-').unwrap_or(text);
            let mut parts = body.splitn(2, '.');
            let int = parts.next().unwrap_or("");
            let frac = parts.next();
            !int.is_empty()
                && int.bytes().all(|b| b.is_ascii_digit())
                && frac.is_none_or(|f| !f.is_empty() && f.bytes().all(|b| b.is_ascii_digit()))
        };
        if !plain {
            return Err(Rejection::new(
                RejectionCode::PriceInvalid,
                format!("price {text:?} is not a plain decimal such as 29.99"),
            ));
        }
        // Over-long inputs overflow Decimal; cut the reason by what went wrong.
        match Decimal::from_str_exact(text) {
            Ok(d) => Self::new(d),
            Err(_) if text.starts_with('-') => Err(Rejection::new(
                RejectionCode::PriceNegative,
                format!("price {text} is below zero"),
            )),
            Err(_)
                if text.contains('.') && text.split('.').next().is_some_and(|i| i.len() <= 12) =>
            {
                Err(Rejection::new(
                    RejectionCode::PriceTooPrecise,
                    format!("price {text} has more than {MAX_PRICE_SCALE} decimal places"),
                ))
            }
            Err(_) => Err(Rejection::new(
                RejectionCode::PriceTooLarge,
                format!("price {text} is above {MAX_PRICE}"),
            )),
        }
    }

    pub fn get(self) -> Decimal {
        self.0
    }
}

impl TryFrom<Decimal> for Price {
    type Error = Rejection;
    fn try_from(d: Decimal) -> Result<Self, Rejection> {
        Self::new(d)
    }
}

impl From<Price> for Decimal {
    fn from(p: Price) -> Decimal {
        p.0
    }
}

impl fmt::Display for Price {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// ISO 4217 codes we accept: the active circulating currencies.
pub(crate) const ISO_4217: &[&str] = &[
    "AED", "AFN", "ALL", "AMD", "ANG", "AOA", "ARS", "AUD", "AWG", "AZN", "BAM", "BBD", "BDT",
    "BGN", "BHD", "BIF", "BMD", "BND", "BOB", "BRL", "BSD", "BTN", "BWP", "BYN", "BZD", "CAD",
    "CDF", "CHF", "CLP", "CNY", "COP", "CRC", "CUP", "CVE", "CZK", "DJF", "DKK", "DOP", "DZD",
    "EGP", "ERN", "ETB", "EUR", "FJD", "FKP", "GBP", "GEL", "GHS", "GIP", "GMD", "GNF", "GTQ",
    "GYD", "HKD", "HNL", "HTG", "HUF", "IDR", "ILS", "INR", "IQD", "IRR", "ISK", "JMD", "JOD",
    "JPY", "KES", "KGS", "KHR", "KMF", "KPW", "KRW", "KWD", "KYD", "KZT", "LAK", "LBP", "LKR",
    "LRD", "LSL", "LYD", "MAD", "MDL", "MGA", "MKD", "MMK", "MNT", "MOP", "MRU", "MUR", "MVR",
    "MWK", "MXN", "MYR", "MZN", "NAD", "NGN", "NIO", "NOK", "NPR", "NZD", "OMR", "PAB", "PEN",
    "PGK", "PHP", "PKR", "PLN", "PYG", "QAR", "RON", "RSD", "RUB", "RWF", "SAR", "SBD", "SCR",
    "SDG", "SEK", "SGD", "SHP", "SLE", "SOS", "SRD", "SSP", "STN", "SVC", "SYP", "SZL", "THB",
    "TJS", "TMT", "TND", "TOP", "TRY", "TTD", "TWD", "TZS", "UAH", "UGX", "USD", "UYU", "UZS",
    "VES", "VND", "VUV", "WST", "XAF", "XCD", "XOF", "XPF", "YER", "ZAR", "ZMW", "ZWL",
];

/// An ISO 4217 currency code, upper case. Defaults to USD when a record names none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Currency([u8; 3]);

impl Currency {
    pub const USD: Currency = Currency(*b"USD");

    pub fn parse(s: &str) -> Result<Self, Rejection> {
        match ISO_4217.binary_search(&s) {
            Ok(i) => {
                let b = ISO_4217[i].as_bytes();
                Ok(Self([b[0], b[1], b[2]]))
            }
            Err(_) => Err(Rejection::new(
                RejectionCode::CurrencyUnknown,
                format!(
                    "currency {s:?} is not an ISO 4217 code we accept (upper case, for example USD)"
                ),
            )),
        }
    }

    pub fn as_str(&self) -> &str {
        // Only built from the ASCII table above.
        std::str::from_utf8(&self.0).unwrap_or("USD")
    }
}

impl Default for Currency {
    fn default() -> Self {
        Self::USD
    }
}

impl FromStr for Currency {
    type Err = Rejection;
    fn from_str(s: &str) -> Result<Self, Rejection> {
        Self::parse(s)
    }
}

impl TryFrom<String> for Currency {
    type Error = Rejection;
    fn try_from(s: String) -> Result<Self, Rejection> {
        Self::parse(&s)
    }
}

impl From<Currency> for String {
    fn from(c: Currency) -> String {
        c.as_str().to_owned()
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_negative_price_too_long_for_a_decimal_is_still_named_negative() {
        let text = format!("-{}.5", "9".repeat(40));
        let e = Price::parse_decimal(&text).expect_err("refused");
        assert_eq!(e.code, RejectionCode::PriceNegative);
        assert_eq!(e.message, format!("price {text} is below zero"));
    }

    #[test]
    fn a_currency_reads_from_text_like_parse() {
        assert_eq!(
            "EUR".parse::<Currency>().map(|c| c.as_str().to_owned()),
            Ok("EUR".into())
        );
        assert_eq!(
            "eur".parse::<Currency>().expect_err("lower case").code,
            RejectionCode::CurrencyUnknown
        );
    }

    #[test]
    fn the_currency_table_is_sorted_for_binary_search() {
        assert!(ISO_4217.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn max_price_is_a_trillion_minus_one() {
        assert_eq!(MAX_PRICE, Decimal::from(999_999_999_999_i64));
    }

    #[test]
    fn quantities_must_be_whole_and_in_range() {
        assert_eq!(
            Quantity::parse_json_number("100").map(Quantity::get),
            Ok(100)
        );
        assert_eq!(Quantity::parse_json_number("0").map(Quantity::get), Ok(0));
        let code = |t: &str| Quantity::parse_json_number(t).expect_err("reject").code;
        assert_eq!(code("-1"), RejectionCode::QuantityNegative);
        assert_eq!(code("1.5"), RejectionCode::QuantityNotInteger);
        assert_eq!(code("1e3"), RejectionCode::QuantityNotInteger);
        assert_eq!(code("100.0"), RejectionCode::QuantityNotInteger);
        assert_eq!(code("1000000001"), RejectionCode::QuantityTooLarge);
        assert_eq!(
            code("99999999999999999999999"),
            RejectionCode::QuantityTooLarge
        );
        assert_eq!(
            code("-99999999999999999999999"),
            RejectionCode::QuantityNegative
        );
    }

    #[test]
    fn prices_are_exact_and_normalised() {
        let p = Price::parse_decimal("29.99").expect("valid");
        assert_eq!(p.to_string(), "29.99");
        assert_eq!(
            Price::parse_decimal("29.9000").expect("valid"),
            Price::parse_decimal("29.9").expect("valid")
        );
        assert_eq!(Price::parse_decimal("-0").expect("zero").to_string(), "0");
        // 0.1 + 0.2 is exactly 0.3 here, unlike with f64.
        let sum = Price::parse_decimal("0.1").expect("valid").get()
            + Price::parse_decimal("0.2").expect("valid").get();
        assert_eq!(sum, Price::parse_decimal("0.3").expect("valid").get());
    }

    #[test]
    fn bad_prices_are_rejected_with_the_reason() {
        let code = |t: &str| Price::parse_decimal(t).expect_err("reject").code;
        assert_eq!(code("-1.50"), RejectionCode::PriceNegative);
        assert_eq!(code("1.23456"), RejectionCode::PriceTooPrecise);
        assert_eq!(code("1e3"), RejectionCode::PriceInvalid);
        assert_eq!(code("abc"), RejectionCode::PriceInvalid);
        assert_eq!(code(".5"), RejectionCode::PriceInvalid);
        assert_eq!(code("5."), RejectionCode::PriceInvalid);
        assert_eq!(code("1000000000000"), RejectionCode::PriceTooLarge);
        assert_eq!(
            code("99999999999999999999999999999999"),
            RejectionCode::PriceTooLarge
        );
        assert_eq!(
            code("1.0000000000000000000000000000001"),
            RejectionCode::PriceTooPrecise
        );
    }

    #[test]
    fn currencies_are_iso_codes_in_upper_case() {
        assert_eq!(
            Currency::parse("EUR").map(|c| c.to_string()),
            Ok("EUR".into())
        );
        assert_eq!(
            Currency::parse("usd").expect_err("lower").code,
            RejectionCode::CurrencyUnknown
        );
        assert_eq!(
            Currency::parse("XXX").expect_err("unknown").code,
            RejectionCode::CurrencyUnknown
        );
        assert_eq!(Currency::default(), Currency::USD);
    }
}
