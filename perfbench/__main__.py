from perfbench.commands.main import main

raise SystemExit(main())
