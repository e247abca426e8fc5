"""The bottom layer every package may import: the error type and YAML/JSONL loading."""
