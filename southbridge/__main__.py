from southbridge.commands import main

raise SystemExit(main())
