from southbridge.cli import main

raise SystemExit(main())
