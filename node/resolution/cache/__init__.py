"""The hot resolution path: a record cache with ready-to-send replies per front
(``records``), kept coherent across node instances by PostgreSQL LISTEN/NOTIFY
(``listener``), measured without slowing it down (``stats``)."""
