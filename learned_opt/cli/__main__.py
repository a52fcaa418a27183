"""``python -m learned_opt.cli``."""

from learned_opt.cli import main

main()
