from scalper.cli import main

raise SystemExit(main())
