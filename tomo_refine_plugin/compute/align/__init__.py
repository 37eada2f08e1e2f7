"""Tilt-series alignment (drop-in for ``relion_tomo_align``, static model): see :mod:`.program`."""
