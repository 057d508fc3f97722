"""A small Pascal VOC scene for the tiling tests: an image and boxes placed across the 128-pixel tile borders."""

import cv2
import numpy as np

WIDTH, HEIGHT = 300, 250
#: (class, xmin, ymin, xmax, ymax) in VOC coordinates (1-based, inclusive), placed across the 128-px tile borders
BOXES = [
    ('car', 10, 10, 60, 50),  # inside the first tile
    ('tree', 100, 20, 159, 60),  # cut at x=128: 29 of 60 columns left, 31 right
    ('car', 120, 60, 139, 100),  # cut at x=128: 9 of 20 columns left, 11 right
    ('tree', 240, 200, 300, 250),  # touches the right and bottom borders
    ('tree', 30, 127, 70, 129),  # cut at y=128: rows 127-128 above (2 rows), 129 below (1 row: dropped there)
]


def voc_xml(boxes, width=WIDTH, height=HEIGHT, size=True, extra='') -> bytes:
    objects = ''.join(
        f'<object><name>{n}</name><difficult>0</difficult><truncated>0</truncated>'
        f'<bndbox><xmin>{a}</xmin><ymin>{b}</ymin><xmax>{c}</xmax><ymax>{d}</ymax></bndbox></object>'
        for n, a, b, c, d in boxes
    )
    size_xml = f'<size><width>{width}</width><height>{height}</height><depth>3</depth></size>' if size else ''
    return f'<annotation><filename>x.png</filename>{size_xml}{objects}{extra}</annotation>'.encode()


def scene(seed=0, width=WIDTH, height=HEIGHT) -> bytes:
    rng = np.random.default_rng(seed)
    img = rng.integers(20, 236, size=(height, width, 3), dtype=np.uint8)
    img = cv2.GaussianBlur(img, (5, 5), 0)  # JPEG-friendly, still varied
    return cv2.imencode('.png', img)[1].tobytes()
