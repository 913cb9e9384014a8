"""The `relaystream` command line."""


def main() -> None:
    print("relaystream")
