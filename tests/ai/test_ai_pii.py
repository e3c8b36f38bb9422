"""Every PII recognizer with true and false cases, and the checksums behind them."""

from __future__ import annotations

import pytest

from tasks.ai.safety import find_pii, iban_valid, luhn_valid


def _types(text: str) -> list[str]:
    return [finding.finding_type for finding in find_pii(text)]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Card: 4111 1111 1111 1111, exp 09/28", "credit_card"),
        ("use 5500-0000-0000-0004 for the deposit", "credit_card"),
        ("amex 378282246310005 on file", "credit_card"),
        ("Wire to DE89 3704 0044 0532 0130 00 please", "iban"),
        ("IBAN GB82WEST12345698765432", "iban"),
        ("Reach me at jane.doe@example.com", "email_address"),
        ("my SSN is 536-22-8741", "us_ssn"),
        ("call me on (650) 253-0000 after lunch", "phone_number"),
        ("UK office: +44 20 7946 0958", "phone_number"),
    ],
)
def test_recognizers_find_true_cases(text: str, expected: str) -> None:
    assert expected in _types(text)


@pytest.mark.parametrize(
    ("text", "not_expected"),
    [
        ("card 4111 1111 1111 1112", "credit_card"),  # fails Luhn: not a card
        ("order number 1234 5678 9012 3456", "credit_card"),
        ("IBAN DE89 3704 0044 0532 0130 01", "iban"),  # checksum off by one
        ("email me at jane.doe at example dot com", "email_address"),
        ("ticket 123-45-6789 is a known sample, not a person", "us_ssn"),  # presidio's known-invalid numbers
        ("area 000-12-3456 is never issued", "us_ssn"),
        ("version 2024-11-29 shipped", "phone_number"),
        ("the fictional 555-0100 number", "phone_number"),
    ],
)
def test_recognizers_reject_false_cases(text: str, not_expected: str) -> None:
    assert not_expected not in _types(text)


def test_findings_carry_a_masked_preview_and_span_not_the_value() -> None:
    text = "card 4111 1111 1111 1111"
    [finding] = find_pii(text)
    assert finding.detail["preview"] == "************1111"
    assert "4111 1111" not in str(finding.as_json())
    assert text[finding.start : finding.end] == "4111 1111 1111 1111"


@pytest.mark.parametrize(
    ("number", "valid"),
    [("4111111111111111", True), ("4111111111111112", False), ("79927398713", False), ("0000 0000 0000 0000", True)],
)
def test_luhn(number: str, valid: bool) -> None:
    assert luhn_valid(number) is valid


@pytest.mark.parametrize(
    ("iban", "valid"),
    [
        ("DE89 3704 0044 0532 0130 00", True),
        ("GB82WEST12345698765432", True),
        ("GB82WEST12345698765433", False),
        ("XX00", False),
    ],
)
def test_iban_checksum(iban: str, valid: bool) -> None:
    assert iban_valid(iban) is valid
