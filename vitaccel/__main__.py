from vitaccel.cli import main

raise SystemExit(main())
