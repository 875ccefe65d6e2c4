"""``python -m hf_genrec.cli``: the ``hf-genrec`` command (what ``accelerate launch -m hf_genrec.cli`` runs)."""

import sys

from .main import main

if __name__ == "__main__":
    sys.exit(main())
