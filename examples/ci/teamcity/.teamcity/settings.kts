// Plan review for pull requests in TeamCity (Kotlin DSL): the equivalent of ../../github-actions.yml.
// Copy .teamcity/ into the repository that holds playbooks/ and inventories/ and enable versioned settings.
//
// The plan is attached as the build artifact plan.md (and shown on the build's "Plan" report tab);
// the Pull Requests feature builds each PR branch and Commit Status Publisher reports the result.
// Nothing here contacts a host: plans are --offline (versions recorded in the inventory) or from
// a committed facts file (--facts), and the agents need no SSH access to production.

import jetbrains.buildServer.configs.kotlin.*
import jetbrains.buildServer.configs.kotlin.buildFeatures.PullRequests
import jetbrains.buildServer.configs.kotlin.buildFeatures.commitStatusPublisher
import jetbrains.buildServer.configs.kotlin.buildFeatures.pullRequests
import jetbrains.buildServer.configs.kotlin.buildSteps.script
import jetbrains.buildServer.configs.kotlin.triggers.vcs

version = "2024.03"

project {
    buildType(UpgradePlanReview)
}

object UpgradePlanReview : BuildType({
    name = "Upgrade plan review"
    description = "validate playbooks and attach the plan of each changed playbook (offline)"
    artifactRules = "plan.md"

    vcs {
        root(DslContext.settingsRoot)
        cleanCheckout = true
    }

    params {
        param("env.INVENTORY", "inventories/prod-na.yml")
        param("env.BASE_BRANCH", "%teamcity.pullRequest.target.branch%")
    }

    steps {
        script {
            name = "Install upgrader"
            scriptContent = """
                set -eu
                python3.11 -m venv .venv
                .venv/bin/pip install --quiet .
            """.trimIndent()
        }
        script {
            name = "Validate every playbook"
            scriptContent = ".venv/bin/upgrader validate playbooks/*.yml -i \"${'$'}INVENTORY\""
        }
        script {
            name = "Plan the changed playbooks (offline)"
            scriptContent = """
                set -eu
                git fetch --quiet origin "${'$'}BASE_BRANCH"
                changed=${'$'}(git diff --name-only --diff-filter=d "FETCH_HEAD...HEAD" -- 'playbooks/*.yml')
                [ -n "${'$'}changed" ] || changed=${'$'}(ls playbooks/*.yml)
                # The base branch's files, to plan each playbook as it was there (as in github-actions.yml).
                git worktree add --detach ../base FETCH_HEAD > /dev/null
                here=${'$'}(pwd)
                up=${'$'}here/.venv/bin/upgrader
                : > plan.md
                for playbook in ${'$'}changed; do
                  ${'$'}up plan "${'$'}playbook" -i "${'$'}INVENTORY" --offline --format json --out head.json
                  if [ -f "../base/${'$'}playbook" ] && (cd ../base && ${'$'}up plan "${'$'}playbook" \
                        -i "${'$'}INVENTORY" --offline --format json --out "${'$'}here/base.json"); then
                    ${'$'}up diff base.json head.json --format markdown --exit-zero >> plan.md
                  else  # new in this branch, or the base cannot plan it: the whole plan
                    ${'$'}up plan "${'$'}playbook" -i "${'$'}INVENTORY" --offline --format markdown --out plan-one.md
                    cat plan-one.md >> plan.md
                  fi
                  echo >> plan.md
                done
                git worktree remove --force ../base
            """.trimIndent()
        }
    }

    triggers {
        vcs {
            branchFilter = "+:pull/*"
            triggerRules = """
                +:playbooks/**
                +:inventories/**
            """.trimIndent()
        }
    }

    features {
        pullRequests {
            provider = github {
                authType = token { token = "credentialsJSON:github-pr-token" }
                filterTargetBranch = "+:refs/heads/main"
                filterAuthorRole = PullRequests.GitHubRoleFilter.MEMBER
            }
        }
        commitStatusPublisher {
            publisher = github {
                githubUrl = "https://api.github.com"
                authType = personalToken { token = "credentialsJSON:github-pr-token" }
            }
        }
    }
})
