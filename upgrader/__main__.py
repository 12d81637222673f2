from upgrader.cli.main import main

raise SystemExit(main())
