from nextlab.cli import main

raise SystemExit(main())
