"""The launcher: the ``pricewatch`` command (``cli``), the whole pipeline as child processes
(``stack``, ``demo``), the embedded broker and PostgreSQL (``embedded``) and the one way
child processes are started and stopped (``processes``). The only package that imports
every role."""
