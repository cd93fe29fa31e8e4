//! `paymig ci-template`: the CloudFormation template for scheduled runs
//! ([`crate::cicd`]), printed as YAML. Reads the configuration only.

use crate::cli::TemplateSide;
use crate::config::Config;
use crate::error::{Error, Result};

pub fn run(cfg: &Config, args: crate::cli::CiTemplateArgs) -> Result<()> {
    let crate::cli::CiTemplateArgs { side, schedule } = args;
    let schedule = schedule.as_str();
    let problems = crate::cicd::problems(cfg);
    if !problems.is_empty() {
        return Err(Error::Preflight(problems));
    }
    if !(schedule.starts_with("cron(") || schedule.starts_with("rate(")) || !schedule.ends_with(')') {
        return Err(Error::Usage(format!(
            "--schedule {schedule:?}: not an EventBridge schedule expression\nhelp: cron(0 3 * * ? *) runs nightly at 03:00 UTC; rate(6 hours) every six hours"
        )));
    }
    let template = match side {
        TemplateSide::Target => crate::cicd::target(cfg, schedule),
        TemplateSide::Source => crate::cicd::source(cfg),
    };
    print!("{}", crate::cicd::yaml::to_yaml(&template));
    Ok(())
}
