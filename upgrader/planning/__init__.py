"""The pure planner: playbook + inventory + facts → Plan. No SSH, no clock, no environment."""
