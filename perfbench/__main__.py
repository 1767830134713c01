from perfbench.cli import main

raise SystemExit(main())
