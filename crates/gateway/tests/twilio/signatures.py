"""Webhook signatures by the official `twilio` package, for tests/twilio_carrier.rs.

Reads one JSON object on stdin and writes one JSON object on stdout:

    {"token": "...", "cases": [{"url": "...", "params": [["Name", "value"], ...],
                                "signature": "..." (optional)}, ...]}
    -> {"twilio": "9.x", "results": [{"signature": "...", "valid": true|null}, ...]}

`signature` is RequestValidator.compute_signature(url, params); `valid` is
RequestValidator.validate(url, params, case["signature"]) when the case carries one.
Repeated parameter names are passed as a multi-dict (the `getall` interface Flask uses), so
the package sees every value, as it does in a web framework.
Exit status 3 when the package is missing (the Rust test then skips loudly).
"""

import json
import sys

try:
    import twilio
    from twilio.request_validator import RequestValidator
except ImportError as error:  # pragma: no cover
    print(f"the twilio package is missing: {error}", file=sys.stderr)
    sys.exit(3)


class MultiDict(dict):
    """name -> first value, plus getall(name) -> every value (as Flask's MultiDict)."""

    def __init__(self, pairs):
        super().__init__()
        self._all = {}
        for name, value in pairs:
            self._all.setdefault(name, []).append(value)
            self.setdefault(name, value)

    def getall(self, name):
        return list(self._all[name])


def main():
    request = json.load(sys.stdin)
    validator = RequestValidator(request["token"])
    results = []
    for case in request["cases"]:
        params = MultiDict(case["params"])
        result = {"signature": validator.compute_signature(case["url"], params)}
        if "signature" in case:
            result["valid"] = validator.validate(case["url"], params, case["signature"])
        else:
            result["valid"] = None
        results.append(result)
    json.dump({"twilio": twilio.__version__, "results": results}, sys.stdout)


if __name__ == "__main__":
    main()
