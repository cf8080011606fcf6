"""Reading the JSON files a user edits (config.json, pins files): what Windows editors save as well,
UTF-8 with a byte-order mark, UTF-16 and CRLF line ends, and one line naming the file for anything else."""
import codecs
from pathlib import Path

from bridge import fastjson


class JsonFileError(ValueError):
    """The file cannot be read or is not a JSON object; the text names the file and says why."""


def read_text(path, what=None):
    """The file's text: UTF-8 (a byte-order mark dropped) or UTF-16 with its byte-order mark."""
    what = what or str(path)
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise JsonFileError(f"cannot read {what}: {e.strerror or e}") from None
    try:
        if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
            return data.decode("utf-16")
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise JsonFileError(f"{what} is not UTF-8 text (byte {e.start}: {data[e.start:e.start + 1]!r}); save it "
                            f"as UTF-8") from None


def read_object(path, what=None):
    """(text, the JSON object it holds) of a file read by read_text."""
    what = what or str(path)
    text = read_text(path, what)
    try:
        value = fastjson.loads(text)
    except ValueError as e:  # nested too deeply to read, too
        raise JsonFileError(f"{what} is not valid JSON: {e}") from None
    if not isinstance(value, dict):
        raise JsonFileError(f"{what} must hold a JSON object")
    return text, value
