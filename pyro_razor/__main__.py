from pyro_razor.cli import main

raise SystemExit(main())
