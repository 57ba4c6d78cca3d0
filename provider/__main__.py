from provider.cli import main

raise SystemExit(main())
