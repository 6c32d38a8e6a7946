"""QR codes of payment links, as PNG (pure-Python pypng) or SVG (no dependency)."""

from __future__ import annotations

import io

import qrcode
from qrcode.image.pure import PyPNGImage
from qrcode.image.svg import SvgPathImage


def _code(data: str) -> qrcode.QRCode:
    code = qrcode.QRCode(error_correction=qrcode.constants.ERROR_CORRECT_M, box_size=8, border=4)
    code.add_data(data)
    code.make(fit=True)
    return code


def png(data: str) -> bytes:
    buffer = io.BytesIO()
    _code(data).make_image(image_factory=PyPNGImage).save(buffer)
    return buffer.getvalue()


def svg(data: str) -> bytes:
    buffer = io.BytesIO()
    _code(data).make_image(image_factory=SvgPathImage).save(buffer)
    return buffer.getvalue()
